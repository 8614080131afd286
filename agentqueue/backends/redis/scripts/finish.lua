-- finish: apply a batch of attempt outcomes of leases this worker still holds.
-- ARGV: now, worker, then per outcome 9 values: job id, attempt, kind, output (JSON),
-- error (JSON record or ''), message, reason, retry_in (us), event data (JSON).
-- Returns {last event id (0: none), lost job ids...}.
local now = clock(ARGV[1])
local worker = ARGV[2]
local out = {0}
-- The batch's index writes, one per key (flushed after the body): nothing here reads an index.
gather_writes()
for a = 3, #ARGV, 9 do
  local id = ARGV[a]
  if held(id, worker, ARGV[a + 1]) then
    out[1] = apply_outcome(id, ARGV[a + 2], {output = ARGV[a + 3], error = ARGV[a + 4],
      message = ARGV[a + 5], reason = ARGV[a + 6], retry_in = ARGV[a + 7],
      data = ARGV[a + 8]}, now, nil)
  else
    table.insert(out, id)
  end
end
return out
