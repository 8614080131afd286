-- remove_limit: delete one flow limit and its rate window.
-- ARGV: now, field (`<scope>:<key>`). Returns {announced id (0: none), 1 when it existed else 0}.
local now = clock(ARGV[1])
local field = ARGV[2]
local scope, name = string.match(field, '^([^:]+):(.*)$')
redis.call('DEL', key('rate', scope, name))
local removed = redis.call('HDEL', key('limits'), field)
if removed == 1 then
  announce_control(now)  -- wake waiters (limit_update.lua)
end
return {last_event or 0, removed}
