-- rescue: take back expired leases the client found. Each is re-checked here (still
-- processing under the same worker and attempt, lease still expired) because a heartbeat may
-- have extended it since the client looked.
-- ARGV: now, then per job 8 values: job id, attempt, worker, kind (retry/fail),
-- error (JSON record), message, reason, event data (JSON).
-- Returns {last event id (0: none), rescued job ids...}.
local now = clock(ARGV[1])
local out = {0}
for a = 2, #ARGV, 8 do
  local id = ARGV[a]
  local expires = redis.call('ZSCORE', key('leases'), id)
  if held(id, ARGV[a + 2], ARGV[a + 1]) and expires and tonumber(expires) < now then
    out[1] = apply_outcome(id, ARGV[a + 3], {output = '', error = ARGV[a + 4],
      message = ARGV[a + 5], reason = ARGV[a + 6], retry_in = '0',
      data = ARGV[a + 7]}, now, 'rescue')
    table.insert(out, id)
  end
end
return out
