-- complete_token: pending -> completed with data, and resume the jobs waiting on the token.
-- A token at or past its expiry is expired instead (its waiters resume too). Redis runs one
-- script at a time: of any number of concurrent calls, exactly one completes the token.
-- ARGV: now, token id, data (JSON).
-- Returns {kind ('completed', 'not_pending', 'not_found'), last event id (0: none),
-- resumed job id ('' = none), token (JSON array, '' when not found)}.
local now = clock(ARGV[1])
local tid = ARGV[2]
local t = redis.call('HMGET', key('token', tid), 'status', 'expires_at')
if not t[1] then
  return {'not_found', 0, '', ''}
end
if t[1] ~= 'pending' then
  return {'not_pending', 0, '', token_reply(tid)}
end
local kind = 'completed'
if token_past(t[2], now) then
  kind = 'not_pending'
  close_token(tid, 'expired', now, nil)
else
  close_token(tid, 'completed', now, ARGV[3])
end
local first, eid = resume_waiters(tid, now, kind ~= 'completed')
return {kind, eid, first or '', token_reply(tid)}
