-- remove_cron_job: delete a schedule and its index entries (the jobs it enqueued stay).
-- ARGV: name. Returns 1 when there was one, else 0.
local name = ARGV[1]
redis.call('ZREM', key('crons'), name)
redis.call('ZREM', key('cron_due'), name)
return redis.call('DEL', key('cron', name))
