-- set_progress: record progress under a held lease.
-- ARGV: now, worker, job id, attempt, progress, message ('' with has_message '0' = none),
-- has_message, event data (JSON).
-- Returns {event id, 1} or {0, 0} when the lease is lost.
local now = clock(ARGV[1])
local id = ARGV[3]
if not held(id, ARGV[2], ARGV[4]) then
  return {0, 0}
end
local jk = key('job', id)
redis.call('HSET', jk, 'progress', ARGV[5], 'updated_at', int(now))
if ARGV[7] == '1' then
  redis.call('HSET', jk, 'progress_message', ARGV[6])
else
  redis.call('HDEL', jk, 'progress_message')
end
local f = redis.call('HMGET', jk, 'job_type', 'queue')
return {emit(id, f[1], f[2], 'progress', 'processing', now, ARGV[8]), 1}
