-- resume_due: waiting -> pending for jobs whose wake-up time has come. The client found them
-- in `waiting`; each is re-checked here (still waiting, same run_at, due) because a token may
-- have resumed it since, or an operator cancelled it.
-- ARGV: now, then per job 3 values: job id, run_at (as read), event data (JSON).
-- Returns {last event id (0: none), resumed job ids...}.
local now = clock(ARGV[1])
local out = {0}
for a = 2, #ARGV, 3 do
  local id, run_at = ARGV[a], ARGV[a + 1]
  local f = redis.call('HMGET', key('job', id), 'status', 'run_at')
  if f[1] == 'waiting' and f[2] == run_at and tonumber(run_at) <= now then
    -- run_at is kept: the job has been due since then.
    out[1] = resume_job(id, run_at, now, ARGV[a + 2])
    table.insert(out, id)
  end
end
return out
