-- publish_job_types: insert or replace job-type descriptions.
-- ARGV: now, then name / description (JSON, without updated_at) pairs.
local now = clock(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', key('types'), ARGV[i], ARGV[i + 1])
  redis.call('HSET', key('types_updated_at'), ARGV[i], int(now))
end
return 1
