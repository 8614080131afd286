-- beat_worker: record a live worker (its JSON without last_seen_at) and when it was seen.
-- ARGV: now, worker id, worker JSON (WorkerInfo without last_seen_at), '1' to remove instead.
local now = clock(ARGV[1])
local id = ARGV[2]
if ARGV[4] == '1' then
  redis.call('HDEL', key('workers'), id)
  redis.call('ZREM', key('workers_seen'), id)
  return 0
end
redis.call('HSET', key('workers'), id, ARGV[3])
redis.call('ZADD', key('workers_seen'), int(now), id)
return 0
