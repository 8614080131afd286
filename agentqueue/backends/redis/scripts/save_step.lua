-- save_step: memoize a step's result under a held lease; the first value of a name stays.
-- ARGV: now, worker, job id, attempt, step name, value (JSON), event data (JSON).
-- Returns {event id (0: the name was stored already), 1} or {0, 0} when the lease is lost.
local now = clock(ARGV[1])
local id = ARGV[3]
if not held(id, ARGV[2], ARGV[4]) then
  return {0, 0}
end
if redis.call('HSETNX', key('job', id, 'steps'), ARGV[5], ARGV[6]) == 0 then
  return {0, 1}
end
local f = redis.call('HMGET', key('job', id), 'job_type', 'queue')
return {emit(id, f[1], f[2], 'step', 'processing', now, ARGV[7]), 1}
