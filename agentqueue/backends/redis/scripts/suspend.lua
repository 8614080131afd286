-- suspend: processing -> waiting under a held lease (a durable sleep or a token wait).
-- ARGV: now, worker, job id, attempt, until (epoch us), token id ('' = none), event data
-- of the `wait` (JSON), event data of a `cancel` (JSON).
-- Returns {'lost'}, {'suspended', event id} or {'token', event id (0: none), token (JSON
-- array)} when the token is no longer pending (or just expired here): the job keeps running.
-- Refuses an unknown token with AQ_TOKEN_NOT_FOUND before any write.
local now = clock(ARGV[1])
local worker, id, attempt, until_us, tid = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if not held(id, worker, attempt) then
  return {'lost'}
end
if tid ~= '' then
  local t = redis.call('HMGET', key('token', tid), 'status', 'expires_at')
  if not t[1] then
    return redis.error_reply('AQ_TOKEN_NOT_FOUND')
  end
  if t[1] ~= 'pending' then
    return {'token', 0, token_reply(tid)}
  end
  if token_past(t[2], now) then
    -- Expired now rather than waited on: its other waiters resume too.
    close_token(tid, 'expired', now, nil)
    local _, eid = resume_waiters(tid, now, true)
    return {'token', eid, token_reply(tid)}
  end
end
local jk = key('job', id)
local f = redis.call('HMGET', jk, 'job_type', 'queue', 'cancel_requested')
local job_type, queue = f[1], f[2]
redis.call('ZREM', key('leases'), id)
if f[3] == '1' then
  -- A cancel request is final: a job that went waiting now would be resumed, claimed with
  -- the request cleared and run again. It ends here; the handler stops as for a wait.
  redis.call('HSET', jk, 'status', 'cancelled', 'completed_at', int(now), 'updated_at', int(now))
  redis.call('HDEL', jk, 'lease_expires_at')
  move_status(id, job_type, 'processing', 'cancelled')
  redis.call('ZADD', key('finished'), int(now), id)
  emit(id, job_type, queue, 'cancel', 'cancelled', now, ARGV[8])
  settle_ended(id, job_type, 'cancelled', now)
  return {'suspended', last_event}
end
-- A wait is not a failed attempt: the replay after it is the same attempt.
redis.call('HSET', jk, 'status', 'waiting', 'attempts', int(tonumber(attempt) - 1),
  'run_at', until_us, 'updated_at', int(now))
redis.call('HDEL', jk, 'locked_by', 'lease_expires_at')
if tid ~= '' then
  redis.call('HSET', jk, 'waiting_for', tid)
  redis.call('ZADD', key('token_waiters', tid), id, id)
else
  redis.call('HDEL', jk, 'waiting_for')
end
redis.call('ZADD', key('waiting'), until_us, id)
move_status(id, job_type, 'processing', 'waiting')
return {'suspended', emit(id, job_type, queue, 'wait', 'waiting', now, ARGV[7])}
