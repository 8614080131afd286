-- insert_jobs: store a batch of jobs, all in this one call.
-- ARGV: now, count, then per job 14 values: job_type, queue, payload (JSON), priority,
-- run_at ('' = now, else final epoch us), delay (us, added when run_at is ''), tags (JSON),
-- max_attempts, retry_delay, retry_backoff ('1'/'0'), retry_delay_max (''= none),
-- timeout ('' = none), idempotency_key ('' = none), force_kill_on_timeout ('1'/'0').
-- Returns {last event id (0: none), id1, created1, id2, created2, ...}.
--
-- Index writes are gathered per key and written with one ZADD / HINCRBY per key for the
-- whole batch: each redis.call costs more than the work it does on a sorted set.
local now = clock(ARGV[1])
local count = tonumber(ARGV[2])
local function arg(i, n)
  return ARGV[3 + i * 14 + n]
end

-- Pass 1: idempotency keys. One key per (job type, idempotency key), read and written in this
-- script, so no other client can interleave; duplicates in the batch resolve to the first.
local known = {}  -- batch index -> existing id, or the batch index of the first duplicate
local first_of = {}  -- idempotency key name -> batch index that creates it
local fresh = 0
for i = 0, count - 1 do
  local job_type, ikey = arg(i, 0), arg(i, 12)
  local idem, existing = nil, nil
  if ikey ~= '' then
    idem = idem_key(job_type, ikey)
    existing = first_of[idem] == nil and redis.call('GET', idem)
  end
  if idem and first_of[idem] then
    known[i] = {batch = first_of[idem]}
  elseif existing then
    known[i] = {id = existing}
  else
    if idem then
      first_of[idem] = i
    end
    fresh = fresh + 1
  end
end
if fresh == 0 then
  local out = {0}
  for i = 0, count - 1 do
    table.insert(out, known[i].id)
    table.insert(out, 0)
  end
  return out
end

-- Pass 2: ids and event ids in input order, one job hash, event and history entry each.
local next_id = redis.call('INCRBY', key('next_job_id'), fresh) - fresh
local next_eid = redis.call('INCRBY', key('next_event_id'), fresh) - fresh
-- Each job stored as _insert.lua's insert_job stores one; index writes gathered for the batch.
local batch = new_inserts()
local ids = {}
for i = 0, count - 1 do
  if not known[i] then
    next_id = next_id + 1
    next_eid = next_eid + 1
    ids[i] = int(next_id)
    insert_job(batch, 3 + i * 14, ids[i], int(next_eid), now)
  end
end
flush_inserts(batch)

last_event = int(next_eid)
local out = {last_event}
for i = 0, count - 1 do
  local found = known[i]
  if not found then
    table.insert(out, ids[i])
    table.insert(out, 1)
  elseif found.batch then
    table.insert(out, ids[found.batch])
    table.insert(out, 0)
  else
    table.insert(out, found.id)
    table.insert(out, 0)
  end
end
return out
