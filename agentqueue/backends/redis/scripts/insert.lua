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
local at = int(now)
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
    idem = key('idem', #job_type .. ':' .. job_type, ikey)
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
local order, members, counts = {}, {}, {}
local function index(k, score, member)
  local list = members[k]
  if not list then
    list = {}
    members[k] = list
    table.insert(order, k)
  end
  table.insert(list, score)
  table.insert(list, member)
end
local ids = {}
local events = key('events')
for i = 0, count - 1 do
  if not known[i] then
    next_id = next_id + 1
    next_eid = next_eid + 1
    local id, eid = int(next_id), int(next_eid)
    ids[i] = id
    local job_type, queue, priority, run_at = arg(i, 0), arg(i, 1), arg(i, 3), arg(i, 4)
    local ikey = arg(i, 12)
    if run_at == '' then
      run_at = int(now + tonumber(arg(i, 5)))
    end
    local fields = {'id', id, 'queue', queue, 'job_type', job_type, 'payload', arg(i, 2),
      'status', 'pending', 'priority', priority, 'run_at', run_at, 'created_at', at,
      'updated_at', at, 'attempts', '0', 'max_attempts', arg(i, 7),
      'error_history', '[]', 'tags', arg(i, 6), 'retry_delay', arg(i, 8),
      'retry_backoff', arg(i, 9), 'progress', '0', 'cancel_requested', '0'}
    if arg(i, 10) ~= '' then
      table.insert(fields, 'retry_delay_max'); table.insert(fields, arg(i, 10))
    end
    if arg(i, 11) ~= '' then
      table.insert(fields, 'timeout'); table.insert(fields, arg(i, 11))
    end
    if arg(i, 13) == '1' then
      table.insert(fields, 'force_kill_on_timeout'); table.insert(fields, '1')
    end
    if ikey ~= '' then
      table.insert(fields, 'idempotency_key'); table.insert(fields, ikey)
      redis.call('SET', key('idem', #job_type .. ':' .. job_type, ikey), id)
    end
    redis.call('HSET', key('job', id), unpack(fields))
    index(key('all'), id, id)
    index(key('type', job_type), id, id)
    index(key('queue', queue), id, id)
    index(key('status', 'pending'), id, id)
    for _, tag in ipairs(cjson.decode(arg(i, 6))) do
      index(key('tag', tag), id, id)
    end
    -- As schedule() does, but gathered.
    if tonumber(run_at) <= now then
      local member, score = rank(run_at, id), -tonumber(priority)
      for _, k in ipairs(variants('ready', queue, job_type)) do
        index(k, score, member)
      end
    else
      for _, k in ipairs(variants('sched', queue, job_type)) do
        index(k, run_at, id)
      end
    end
    local counted = 'pending:' .. job_type
    counts[counted] = (counts[counted] or 0) + 1
    redis.call('XADD', events, eid .. '-0', 'job_id', id, 'job_type', job_type,
      'queue', queue, 'type', 'added', 'status', 'pending', 'at', at, 'data', '{}')
    redis.call('RPUSH', key('job', id, 'events'), eid)
  end
end

-- unpack() is bounded by Lua's C stack: write long member lists in slices.
for _, k in ipairs(order) do
  local list = members[k]
  for start = 1, #list, 2000 do
    redis.call('ZADD', k, unpack(list, start, math.min(start + 1999, #list)))
  end
end
for field, n in pairs(counts) do
  redis.call('HINCRBY', key('counts'), field, n)
end

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
