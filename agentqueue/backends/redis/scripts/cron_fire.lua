-- fire_cron: fire one tick of a schedule, exactly once however many schedulers race. Redis
-- runs one script at a time: the first call finds the schedule active at this tick and moves
-- it on; every later call for the tick finds it moved and changes nothing.
-- ARGV: now, name, tick (us), next_run_at (us, '' = no further tick), then the tick's job as
-- its JOB_ARGS arguments (_insert.lua), from ARGV[5].
-- Returns {won (1/0), job id ('' = none), skipped for overlap (1/0), last event id (0: none)}.
local now = clock(ARGV[1])
local name, tick, next_run_at = ARGV[2], ARGV[3], ARGV[4]
local ck = key('cron', name)
local f = redis.call('HMGET', ck, 'status', 'next_run_at', 'allow_overlap', 'last_job_id')
if f[1] ~= 'active' or f[2] ~= tick then
  return {0, '', 0, 0}
end

-- The winner: the schedule moves to its next tick (out of `cron_due` when there is none).
redis.call('HSET', ck, 'last_run_at', tick, 'updated_at', int(now))
if next_run_at == '' then
  redis.call('HDEL', ck, 'next_run_at')
  redis.call('ZREM', key('cron_due'), name)
else
  redis.call('HSET', ck, 'next_run_at', next_run_at)
  redis.call('ZADD', key('cron_due'), next_run_at, name)
end

-- Overlap: the previous tick's job still pending, processing or waiting consumes this tick
-- without a job. A job purged since does not block.
if f[3] ~= '1' and f[4] then
  local status = redis.call('HGET', key('job', f[4]), 'status')
  if status == 'pending' or status == 'processing' or status == 'waiting' then
    return {1, '', 1, 0}
  end
end

-- The tick's job, inserted as insert_jobs inserts one; a replayed tick finds its idempotency
-- key taken and gets the job it made before.
local job_type, ikey = ARGV[5], ARGV[5 + 12]
local id = ikey ~= '' and redis.call('GET', idem_key(job_type, ikey))
if not id then
  id = int(redis.call('INCR', key('next_job_id')))
  local batch = new_inserts()
  insert_job(batch, ARGV, 5, id, int(redis.call('INCR', key('next_event_id'))), now, 'pending')
  flush_inserts(batch)
end
redis.call('HSET', ck, 'last_job_id', id)
return {1, id, 0, last_event or 0}
