-- update_limit: change some fields of one flow limit (JSON object under `<scope>:<key>` in the
-- `limits` hash; absent fields: no such limit), deleting it when it then limits nothing.
-- ARGV: now, field (`<scope>:<key>`), changes (JSON object; null clears a field).
-- Returns {announced id, the stored limit as JSON ('' when none is left)}.
--
-- A limit is not a job event, but a resumed type or a raised limit may let waiting jobs run:
-- the script writes a control entry (_lib.lua's announce_control), which wakes every worker.
local now = clock(ARGV[1])
local field = ARGV[2]
local current = redis.call('HGET', key('limits'), field)
local lim = current and cjson.decode(current) or {}
for name, value in pairs(cjson.decode(ARGV[3])) do
  if value == cjson.null or value == false then
    lim[name] = nil
  else
    lim[name] = value
  end
end
lim.updated_at = now
announce_control(now)
if lim.max_concurrent == nil and lim.rate_limit == nil and not lim.paused then
  redis.call('HDEL', key('limits'), field)
  return {last_event, ''}
end
local stored = cjson.encode(lim)
redis.call('HSET', key('limits'), field, stored)
return {last_event, stored}
