-- insert_jobs: store a batch of jobs, all in this one call.
-- ARGV: now, count, then per job JOB_ARGS values (see _insert.lua).
-- Returns {last event id (0: none), now (epoch us: the new jobs' created_at), id1, created1,
-- id2, created2, ...}; refuses a batch with a
-- bad prerequisite (AQ_DEPENDENCY <id> <missing|failed|cancelled>) before any write.
--
-- Index writes are gathered per key and written with one ZADD / HINCRBY per key for the
-- whole batch: each redis.call costs more than the work it does on a sorted set.
local now = clock(ARGV[1])
local count = tonumber(ARGV[2])
local function arg(i, n)
  return ARGV[3 + i * JOB_ARGS + n]
end

-- Pass 1: idempotency keys. One key per (job type, idempotency key), read and written in this
-- script, so no other client can interleave; duplicates in the batch resolve to the first.
local known = {}  -- batch index -> existing id, or the batch index of the first duplicate
local first_of = {}  -- idempotency key name -> batch index that creates it
local released = {}  -- ids of jobs whose key's window ended: their key goes to a new job
local fresh = 0
local with_deps = false
for i = 0, count - 1 do
  local job_type, ikey = arg(i, 0), arg(i, 12)
  local idem, existing = nil, nil
  if ikey ~= '' then
    idem = idem_key(job_type, ikey)
    existing = first_of[idem] == nil and redis.call('GET', idem)
    if existing and not key_holder(existing, now) then
      table.insert(released, existing)
      existing = false
    end
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
    with_deps = with_deps or arg(i, 17) ~= ''
  end
end
if fresh == 0 then
  local out = {0, int(now)}
  for i = 0, count - 1 do
    table.insert(out, known[i].id)
    table.insert(out, 0)
  end
  return out
end

-- Pass 2: the new jobs' prerequisites, checked before any write. Inside the batch a job can
-- only name earlier jobs (the client refuses later refs), so no cycle can form.
local outside = {}  -- batch index -> list of existing prerequisite ids
local inside = {}  -- batch index -> list of batch indexes
local statuses = {}  -- existing prerequisite id -> status
if with_deps then
  local drained = {}  -- tag -> batch indexes of earlier new jobs that carry it
  local tagged = {}  -- tag -> unfinished existing jobs with it
  for i = 0, count - 1 do
    local spec = arg(i, 17)
    if not known[i] and spec ~= '' then
      local d = cjson.decode(spec)
      local out_set, in_set = {}, {}
      for _, p in ipairs(d.ids) do
        out_set[int(p)] = true
      end
      for _, b in ipairs(d.batch) do
        local k = known[b]
        if not k then
          in_set[b] = true
        elseif k.batch then
          in_set[k.batch] = true
        else
          out_set[k.id] = true
        end
      end
      for _, tag in ipairs(d.tags) do
        tagged[tag] = tagged[tag] or tag_prerequisites(tag)
        for _, p in ipairs(tagged[tag]) do
          out_set[p] = true
        end
        for _, b in ipairs(drained[tag] or {}) do
          in_set[b] = true
        end
      end
      local ids, idx = {}, {}
      for p in pairs(out_set) do
        table.insert(ids, p)
      end
      table.sort(ids, function(x, y) return tonumber(x) < tonumber(y) end)
      for _, p in ipairs(ids) do
        if statuses[p] == nil then
          local status, refused = prerequisite_status(p)
          if refused then
            return refused
          end
          statuses[p] = status
        end
      end
      for b in pairs(in_set) do
        table.insert(idx, b)
      end
      outside[i], inside[i] = ids, idx
    end
    if not known[i] then
      for _, tag in ipairs(cjson.decode(arg(i, 6))) do
        drained[tag] = drained[tag] or {}
        table.insert(drained[tag], i)
      end
    end
  end
end

-- Pass 3: ids and event ids in input order, one job hash, event and history entry each.
for _, id in ipairs(released) do
  release_key(id)
end
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
    local status = 'pending'
    local prerequisites = {}
    if outside[i] then
      for _, p in ipairs(outside[i]) do
        table.insert(prerequisites, p)
        if statuses[p] ~= 'completed' then
          status = 'blocked'
        end
      end
      for _, b in ipairs(inside[i]) do
        table.insert(prerequisites, ids[b])
        status = 'blocked'
      end
    end
    insert_job(batch, ARGV, 3 + i * JOB_ARGS, ids[i], int(next_eid), now, status)
    if #prerequisites > 0 then
      link_prerequisites(ids[i], prerequisites)
    end
  end
end
flush_inserts(batch)

last_event = int(next_eid)
local out = {last_event, int(now)}
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
