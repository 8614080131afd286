-- Helpers of the durable-execution scripts (waits and tokens), prepended after `_lib.lua` to
-- the scripts of waits and tokens (client.DURABLE_SCRIPTS).
--
-- A waiting job (status `waiting`) is in `waiting` by wake-up time (`run_at`: a sleep's end,
-- its token's expiry, or FOREVER) and, when it waits on a token, in that token's
-- `token_waiters` set; `waiting_for` names the token. Resuming removes it from both.

-- Put a waiting job back to pending at `run_at` (a `resume` event with `data`, JSON text).
-- Returns the event id, or nil when the job is not waiting (any more).
local function resume_job(id, run_at, now, data)
  local jk = key('job', id)
  local f = redis.call('HMGET', jk, 'status', 'job_type', 'queue', 'priority', 'waiting_for')
  if f[1] ~= 'waiting' then
    return nil
  end
  redis.call('HSET', jk, 'status', 'pending', 'run_at', run_at, 'updated_at', int(now))
  redis.call('HDEL', jk, 'waiting_for')
  redis.call('ZREM', key('waiting'), id)
  if f[5] then
    redis.call('ZREM', key('token_waiters', f[5]), id)
  end
  move_status(id, f[2], 'waiting', 'pending')
  schedule(id, f[3], f[2], f[4], run_at, now)
  return emit(id, f[2], f[3], 'resume', 'pending', now, data)
end

-- Resume, pending at now, every job still waiting on a token that was just closed. Returns
-- the smallest resumed job id (nil: none) and the last event id (0: none).
local function resume_waiters(tid, now, expired)
  local data
  if expired then
    data = cjson.encode({token = tid, expired = true})
  else
    data = cjson.encode({token = tid})
  end
  local first, last = nil, 0
  local wk = key('token_waiters', tid)
  for _, id in ipairs(redis.call('ZRANGE', wk, 0, -1)) do
    -- A job that left its wait another way (cancelled) is only dropped from the set.
    if redis.call('HGET', key('job', id), 'waiting_for') == tid then
      local eid = resume_job(id, int(now), now, data)
      if eid then
        last = eid
        first = first or id
      end
    end
  end
  redis.call('DEL', wk)
  return first, last
end

-- pending -> completed (with `data`, JSON text) or expired; the token indexes follow.
local function close_token(tid, to, now, data)
  local tk = key('token', tid)
  redis.call('HSET', tk, 'status', to, 'completed_at', int(now))
  if data then
    redis.call('HSET', tk, 'data', data)
  end
  local created = redis.call('HGET', tk, 'created_at')
  redis.call('ZREM', key('token_status', 'pending'), tid)
  redis.call('ZADD', key('token_status', to), created, tid)
  redis.call('ZREM', key('token_expiry'), tid)
end

-- Whether a token hash's expiry (`expires_at` field, possibly absent) is at or before now.
local function token_past(expires_at, now)
  return expires_at ~= false and expires_at ~= nil and tonumber(expires_at) <= now
end

-- A token's hash as one JSON array of field, value, ... (like job_reply).
local function token_reply(tid)
  return cjson.encode(redis.call('HGETALL', key('token', tid)))
end
