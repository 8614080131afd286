-- read_finished (read-only): finished jobs per time bucket, for the dashboard's charts.
-- ARGV: since (epoch us), bucket length (us). Reads the `finished` index (score: completed_at)
-- from `since` on and the status of each job; returns one JSON object
-- {"<bucket number>:<status>": count, ...}, so the caller gets a few numbers, not the ids.
local ids = redis.call('ZRANGEBYSCORE', key('finished'), ARGV[1], '+inf', 'WITHSCORES')
local width = tonumber(ARGV[2])
local counts = {}
local any = false
for i = 1, #ids, 2 do
  local status = redis.call('HGET', key('job', ids[i]), 'status')
  if status then
    local name = int(math.floor(tonumber(ids[i + 1]) / width)) .. ':' .. status
    counts[name] = (counts[name] or 0) + 1
    any = true
  end
end
if not any then
  return '{}'
end
return cjson.encode(counts)
