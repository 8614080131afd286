-- cancel_job: blocked/pending/waiting -> cancelled (indexed in `finished` for the purge; the
-- jobs blocked on it are cancelled too); processing -> cancel requested (once).
-- ARGV: now, job id, allowed sources (',a,b,').
-- Returns {event id (0: nothing written), job hash (JSON array)}.
local now = clock(ARGV[1])
local id = ARGV[2]
local status, refused = check_source(id, ARGV[3])
if refused then
  return refused
end
local jk = key('job', id)
local f = redis.call('HMGET', jk, 'job_type', 'queue', 'run_at', 'cancel_requested')
local job_type, queue = f[1], f[2]
if status == 'processing' then
  if f[4] == '1' then
    return {0, job_reply(id)}
  end
  redis.call('HSET', jk, 'cancel_requested', '1', 'updated_at', int(now))
  local eid = emit(id, job_type, queue, 'cancel_requested', status, now, '{}')
  return {eid, job_reply(id)}
end
unschedule(id, queue, job_type, f[3])
if status == 'waiting' then
  -- Out of the waiting indexes: neither the resume sweep nor its token resumes it now.
  redis.call('ZREM', key('waiting'), id)
  local token = redis.call('HGET', jk, 'waiting_for')
  if token then
    redis.call('ZREM', key('token_waiters', token), id)
    redis.call('HDEL', jk, 'waiting_for')
  end
end
redis.call('HSET', jk, 'status', 'cancelled', 'completed_at', int(now), 'updated_at', int(now))
redis.call('ZADD', key('finished'), int(now), id)
move_status(id, job_type, status, 'cancelled')
emit(id, job_type, queue, 'cancel', 'cancelled', now, cjson.encode({from = status}))
settle_ended(id, job_type, 'cancelled', now)
return {last_event, job_reply(id)}
