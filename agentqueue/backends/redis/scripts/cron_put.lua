-- put_cron_job: insert or replace a schedule (cron.py).
-- ARGV: now, name, status, next_run_at ('' = none); for a new schedule only: created_at
-- ('' = now), last_run_at ('' = none), last_job_id ('' = none); then the definition as field,
-- value pairs (expression, timezone, job_type, payload, options, allow_overlap, and
-- dead_letter_job_type when set).
-- A replaced schedule keeps its created_at, last_run_at and last_job_id; every other field is
-- the new definition's (a field it leaves unset is deleted).
-- Returns the stored hash as a JSON array (field, value, ...).
local now = clock(ARGV[1])
local name, status, next_run_at = ARGV[2], ARGV[3], ARGV[4]
local ck = key('cron', name)
local kept = redis.call('HMGET', ck, 'created_at', 'last_run_at', 'last_job_id')
local created_at, last_run_at, last_job_id = kept[1], kept[2], kept[3]
if not created_at then  -- a new schedule (every stored one has created_at)
  created_at = ARGV[5] ~= '' and ARGV[5] or int(now)
  last_run_at = ARGV[6] ~= '' and ARGV[6]
  last_job_id = ARGV[7] ~= '' and ARGV[7]
end

local fields = {'name', name, 'status', status, 'created_at', created_at,
  'updated_at', int(now)}
for i = 8, #ARGV do
  table.insert(fields, ARGV[i])
end
if next_run_at ~= '' then
  table.insert(fields, 'next_run_at'); table.insert(fields, next_run_at)
end
if last_run_at then
  table.insert(fields, 'last_run_at'); table.insert(fields, last_run_at)
end
if last_job_id then
  table.insert(fields, 'last_job_id'); table.insert(fields, last_job_id)
end
redis.call('DEL', ck)
redis.call('HSET', ck, unpack(fields))

redis.call('ZADD', key('crons'), 0, name)
if status == 'active' and next_run_at ~= '' then
  redis.call('ZADD', key('cron_due'), next_run_at, name)
else
  redis.call('ZREM', key('cron_due'), name)
end
return cjson.encode(redis.call('HGETALL', ck))
