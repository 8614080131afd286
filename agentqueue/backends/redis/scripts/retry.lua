-- retry_job: a failed or cancelled job back to pending now (blocked while a prerequisite has
-- not completed), attempts reset to 0; refused (AQ_DEPENDENCY) when a prerequisite failed or
-- was cancelled.
-- ARGV: now, job id, allowed sources (',a,b,').
-- Returns {event id, job hash (JSON array)}.
local now = clock(ARGV[1])
local id = ARGV[2]
local status, refused = check_source(id, ARGV[3])
if refused then
  return refused
end
local target, blocked_by = retry_target(id)
if blocked_by then
  return blocked_by
end
local jk = key('job', id)
local f = redis.call('HMGET', jk, 'job_type', 'queue', 'priority')
redis.call('HSET', jk, 'status', target, 'run_at', int(now), 'attempts', '0',
  'updated_at', int(now), 'cancel_requested', '0', 'progress', '0')
redis.call('HDEL', jk, 'completed_at', 'locked_by', 'lease_expires_at', 'failure_reason',
  'progress_message')
redis.call('ZREM', key('leases'), id)
redis.call('ZREM', key('finished'), id)
move_status(id, f[1], status, target)
if target == 'pending' then
  schedule(id, f[2], f[1], f[3], int(now), now)
end
local eid = emit(id, f[1], f[2], 'retry', target, now, cjson.encode({from = status}))
return {eid, job_reply(id)}
