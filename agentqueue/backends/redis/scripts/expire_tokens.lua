-- expire_tokens: pending -> expired for tokens whose expiry has come (`expires_at` <= now),
-- oldest expiry first; the jobs waiting on them resume.
-- ARGV: now, limit.
-- Returns {last event id (0: none), expired token ids...}.
local now = clock(ARGV[1])
local out = {0}
local due = redis.call('ZRANGEBYSCORE', key('token_expiry'), '-inf', int(now),
  'LIMIT', 0, tonumber(ARGV[2]))
for _, tid in ipairs(due) do
  if redis.call('HGET', key('token', tid), 'status') == 'pending' then
    close_token(tid, 'expired', now, nil)
    local _, eid = resume_waiters(tid, now, true)
    if eid ~= 0 then
      out[1] = eid
    end
    table.insert(out, tid)
  else
    redis.call('ZREM', key('token_expiry'), tid)  -- closed already; not indexed any more
  end
end
return out
