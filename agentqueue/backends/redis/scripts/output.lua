-- set_output: store the running job's output now, under a held lease.
-- ARGV: now, worker, job id, attempt, output (JSON).
-- Returns {event id, 1} or {0, 0} when the lease is lost.
local now = clock(ARGV[1])
local id = ARGV[3]
if not held(id, ARGV[2], ARGV[4]) then
  return {0, 0}
end
local jk = key('job', id)
redis.call('HSET', jk, 'output', ARGV[5], 'updated_at', int(now))
local f = redis.call('HMGET', jk, 'job_type', 'queue')
return {emit(id, f[1], f[2], 'output', 'processing', now, '{}'), 1}
