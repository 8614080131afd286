-- due_cron_jobs: the active schedules whose next tick is at or before now, earliest first
-- (ties by name: a sorted set orders equal scores by member).
-- ARGV: now ('' = the server's clock), limit.
-- Returns the schedules' hashes, each a JSON array (field, value, ...).
local now = clock(ARGV[1])
local out = {}
local names = redis.call('ZRANGE', key('cron_due'), '-inf', int(now), 'BYSCORE',
  'LIMIT', 0, tonumber(ARGV[2]))
for _, name in ipairs(names) do
  table.insert(out, cjson.encode(redis.call('HGETALL', key('cron', name))))
end
return out
