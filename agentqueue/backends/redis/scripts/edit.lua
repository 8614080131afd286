-- edit_job: change fields of a pending job and re-index it.
-- ARGV: now, job id, allowed sources (',a,b,'), event data (JSON), tags changed ('1'/'0'),
-- number of fields to set, then field/value pairs, then the fields to delete.
-- Returns {event id, job hash (JSON array)}.
local now = clock(ARGV[1])
local id = ARGV[2]
local status, refused = check_source(id, ARGV[3])
if refused then
  return refused
end
local jk = key('job', id)
local old = redis.call('HMGET', jk, 'job_type', 'queue', 'run_at', 'tags')
local job_type = old[1]
unschedule(id, old[2], job_type, old[3])
local set = {'updated_at', int(now)}
local n = tonumber(ARGV[6])
for i = 7, 6 + 2 * n, 2 do
  table.insert(set, ARGV[i]); table.insert(set, ARGV[i + 1])
end
redis.call('HSET', jk, unpack(set))
for i = 7 + 2 * n, #ARGV do
  redis.call('HDEL', jk, ARGV[i])
end
local new = redis.call('HMGET', jk, 'queue', 'priority', 'run_at', 'tags')
if new[1] ~= old[2] then
  redis.call('ZREM', key('queue', old[2]), id)
  redis.call('ZADD', key('queue', new[1]), id, id)
end
if ARGV[5] == '1' then
  for _, tag in ipairs(cjson.decode(old[4])) do
    redis.call('ZREM', key('tag', tag), id)
  end
  for _, tag in ipairs(cjson.decode(new[4])) do
    redis.call('ZADD', key('tag', tag), id, id)
  end
end
schedule(id, new[1], job_type, new[2], new[3], now)
-- Like every event, it names the job's queue as it was before the change.
local eid = emit(id, job_type, old[2], 'edit', status, now, ARGV[4])
return {eid, job_reply(id)}
