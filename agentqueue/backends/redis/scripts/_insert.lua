-- Storing a new job, shared by the scripts that insert jobs (client.INSERT_SCRIPTS: insert.lua,
-- a batch; cron_fire.lua, a cron tick's job). The loader prepends it after `_lib.lua`.
--
-- A job is given as its 14 script arguments, from ARGV[a] on (produce._job_args): job_type,
-- queue, payload (JSON), priority, run_at ('' = now, else final epoch us), delay (us, added
-- when run_at is ''), tags (JSON), max_attempts, retry_delay, retry_backoff ('1'/'0'),
-- retry_delay_max ('' = none), timeout ('' = none), idempotency_key ('' = none),
-- force_kill_on_timeout ('1'/'0').
--
-- Index writes are gathered per key in a batch (`new_inserts`) and written with one ZADD /
-- HINCRBY per key for the whole batch (`flush_inserts`): each redis.call costs more than the
-- work it does on a sorted set.

-- The string holding the id of the job of an idempotency key: one per (job type, key).
local function idem_key(job_type, ikey)
  return key('idem', #job_type .. ':' .. job_type, ikey)
end

-- An empty batch of gathered index writes.
local function new_inserts()
  return {order = {}, members = {}, counts = {}}
end

local function gather(batch, k, score, member)
  local list = batch.members[k]
  if not list then
    list = {}
    batch.members[k] = list
    table.insert(batch.order, k)
  end
  table.insert(list, score)
  table.insert(list, member)
end

-- Store the job whose arguments start at ARGV[a] as job `id` (text), pending, with its
-- `added` event `eid` (text, already counted in next_event_id): its hash, idempotency key,
-- event and history entry now, its index entries and count into `batch`. The caller has
-- checked that its idempotency key is free, and flushes the batch.
local function insert_job(batch, a, id, eid, now)
  local at = int(now)
  local job_type, queue, priority, run_at = ARGV[a], ARGV[a + 1], ARGV[a + 3], ARGV[a + 4]
  local tags, ikey = ARGV[a + 6], ARGV[a + 12]
  if run_at == '' then
    run_at = int(now + tonumber(ARGV[a + 5]))
  end
  local fields = {'id', id, 'queue', queue, 'job_type', job_type, 'payload', ARGV[a + 2],
    'status', 'pending', 'priority', priority, 'run_at', run_at, 'created_at', at,
    'updated_at', at, 'attempts', '0', 'max_attempts', ARGV[a + 7],
    'error_history', '[]', 'tags', tags, 'retry_delay', ARGV[a + 8],
    'retry_backoff', ARGV[a + 9], 'progress', '0', 'cancel_requested', '0'}
  if ARGV[a + 10] ~= '' then
    table.insert(fields, 'retry_delay_max'); table.insert(fields, ARGV[a + 10])
  end
  if ARGV[a + 11] ~= '' then
    table.insert(fields, 'timeout'); table.insert(fields, ARGV[a + 11])
  end
  if ARGV[a + 13] == '1' then
    table.insert(fields, 'force_kill_on_timeout'); table.insert(fields, '1')
  end
  if ikey ~= '' then
    table.insert(fields, 'idempotency_key'); table.insert(fields, ikey)
    redis.call('SET', idem_key(job_type, ikey), id)
  end
  redis.call('HSET', key('job', id), unpack(fields))
  gather(batch, key('all'), id, id)
  gather(batch, key('type', job_type), id, id)
  gather(batch, key('queue', queue), id, id)
  gather(batch, key('status', 'pending'), id, id)
  for _, tag in ipairs(cjson.decode(tags)) do
    gather(batch, key('tag', tag), id, id)
  end
  -- As schedule() does, but gathered.
  if tonumber(run_at) <= now then
    local member, score = rank(run_at, id), -tonumber(priority)
    for _, k in ipairs(variants('ready', queue, job_type)) do
      gather(batch, k, score, member)
    end
  else
    for _, k in ipairs(variants('sched', queue, job_type)) do
      gather(batch, k, run_at, id)
    end
  end
  local counted = 'pending:' .. job_type
  batch.counts[counted] = (batch.counts[counted] or 0) + 1
  redis.call('XADD', key('events'), eid .. '-0', 'job_id', id, 'job_type', job_type,
    'queue', queue, 'type', 'added', 'status', 'pending', 'at', at, 'data', '{}')
  redis.call('RPUSH', key('job', id, 'events'), eid)
  last_event = eid  -- announced after the script's body (see emit)
end

-- Write a batch's gathered index entries and counts.
local function flush_inserts(batch)
  -- unpack() is bounded by Lua's C stack: write long member lists in slices.
  for _, k in ipairs(batch.order) do
    local list = batch.members[k]
    for start = 1, #list, 2000 do
      redis.call('ZADD', k, unpack(list, start, math.min(start + 1999, #list)))
    end
  end
  for field, n in pairs(batch.counts) do
    redis.call('HINCRBY', key('counts'), field, n)
  end
end
