-- Storing a new job, shared by the scripts that insert jobs (client.INSERT_SCRIPTS: insert.lua,
-- a batch; cron_fire.lua, a cron tick's job). The loader prepends it after `_lib.lua`.
--
-- A job is given as its JOB_ARGS arguments, from t[a] on (ARGV, or a decoded dead-letter
-- spec; produce.job_args):
-- job_type, queue, payload (JSON), priority, run_at ('' = now, else final epoch us), delay
-- (us, added when run_at is ''), tags (JSON), max_attempts, retry_delay, retry_backoff
-- ('1'/'0'), retry_delay_max ('' = none), timeout ('' = none), idempotency_key ('' = none),
-- force_kill_on_timeout ('1'/'0'), group ('' = none), dead_letter (the dead-letter job's own
-- JOB_ARGS as a JSON array with an empty payload, '' = none), idempotency_window (us, '' =
-- none), dependencies (JSON {ids, batch (0-based indexes), tags}, '' = none), origin (JSON
-- models.Origin, '' = none).
--
-- Index writes are gathered per key in a batch (`new_inserts`) and written with one ZADD /
-- HINCRBY per key for the whole batch (`flush_inserts`): each redis.call costs more than the
-- work it does on a sorted set.

local JOB_ARGS = 19

-- The string holding the id of the job of an idempotency key: one per (job type, key).
local function idem_key(job_type, ikey)
  return key('idem', #job_type .. ':' .. job_type, ikey)
end

-- The job that holds an idempotency key now: `id`, or false when the key's window ended (the
-- caller then clears the old job's key with `release_key` and gives it to a new job). Reads
-- only: a script refuses bad input before its first write.
local function key_holder(id, now)
  local expires = redis.call('HGET', key('job', id), 'idempotency_expires_at')
  if expires and tonumber(expires) <= now then
    return false
  end
  return id
end

local function release_key(id)
  redis.call('HDEL', key('job', id), 'idempotency_key', 'idempotency_expires_at')
end

local ACTIVE = {blocked = true, pending = true, processing = true, waiting = true}

-- The ids (text) of the unfinished jobs that carry `tag`, in id order: a drain's
-- prerequisites.
local function tag_prerequisites(tag)
  local found = {}
  for _, id in ipairs(redis.call('ZRANGE', key('tag', tag), 0, -1)) do
    if ACTIVE[redis.call('HGET', key('job', id), 'status')] then
      table.insert(found, id)
    end
  end
  return found
end

-- The status of an existing prerequisite, or the error reply that refuses the whole call
-- (before any write) when it does not exist or can never complete.
local function prerequisite_status(id)
  local status = redis.call('HGET', key('job', id), 'status')
  if not status then
    return nil, redis.error_reply('AQ_DEPENDENCY ' .. id .. ' missing')
  end
  if status == 'failed' or status == 'cancelled' then
    return nil, redis.error_reply('AQ_DEPENDENCY ' .. id .. ' ' .. status)
  end
  return status, nil
end

-- Link job `id` (text) to its prerequisites (ids as text): its `depends_on`, their
-- `dependents` sets and `has_dependents` flags (ending a job without it settles nothing).
local function link_prerequisites(id, prerequisites)
  table.sort(prerequisites, function(x, y) return tonumber(x) < tonumber(y) end)
  redis.call('HSET', key('job', id), 'depends_on', '[' .. table.concat(prerequisites, ',') .. ']')
  for _, p in ipairs(prerequisites) do
    redis.call('SADD', key('job', p, 'dependents'), id)
    redis.call('HSET', key('job', p), 'has_dependents', '1')
  end
end

-- An empty batch of gathered index writes.
local function new_inserts()
  return {order = {}, members = {}, counts = {}}
end

local function gather(batch, k, score, member)
  local list = entry(batch.members, batch.order, k)
  table.insert(list, score)
  table.insert(list, member)
end

-- Store the job whose arguments start at t[a] as job `id` (text) in `status` (pending, or
-- blocked on prerequisites), with its `added` event `eid` (text, already counted in
-- next_event_id): its hash, idempotency key, event and history entry now, its index entries
-- and count into `batch`. The caller has checked that its idempotency key is free, and
-- flushes the batch.
local function insert_job(batch, t, a, id, eid, now, status)
  local at = int(now)
  local job_type, queue, priority, run_at = t[a], t[a + 1], t[a + 3], t[a + 4]
  local tags, ikey = t[a + 6], t[a + 12]
  if run_at == '' then
    run_at = int(now + tonumber(t[a + 5]))
  end
  local fields = {'id', id, 'queue', queue, 'job_type', job_type, 'payload', t[a + 2],
    'status', status, 'priority', priority, 'run_at', run_at, 'created_at', at,
    'updated_at', at, 'attempts', '0', 'max_attempts', t[a + 7],
    'error_history', '[]', 'tags', tags, 'retry_delay', t[a + 8],
    'retry_backoff', t[a + 9], 'progress', '0', 'cancel_requested', '0'}
  if t[a + 10] ~= '' then
    table.insert(fields, 'retry_delay_max'); table.insert(fields, t[a + 10])
  end
  if t[a + 11] ~= '' then
    table.insert(fields, 'timeout'); table.insert(fields, t[a + 11])
  end
  if t[a + 13] == '1' then
    table.insert(fields, 'force_kill_on_timeout'); table.insert(fields, '1')
  end
  if t[a + 14] ~= '' then
    table.insert(fields, 'group'); table.insert(fields, t[a + 14])
  end
  if t[a + 15] ~= '' then
    table.insert(fields, 'dead_letter'); table.insert(fields, t[a + 15])
  end
  local origin = t[a + 18]
  if origin ~= '' then
    table.insert(fields, 'origin'); table.insert(fields, origin)
  end
  if ikey ~= '' and t[a + 16] ~= '' then
    table.insert(fields, 'idempotency_expires_at')
    table.insert(fields, int(now + tonumber(t[a + 16])))
  end
  if ikey ~= '' then
    table.insert(fields, 'idempotency_key'); table.insert(fields, ikey)
    redis.call('SET', idem_key(job_type, ikey), id)
  end
  redis.call('HSET', key('job', id), unpack(fields))
  gather(batch, key('all'), id, id)
  gather(batch, key('type', job_type), id, id)
  gather(batch, key('queue', queue), id, id)
  gather(batch, key('status', status), id, id)
  for _, tag in ipairs(cjson.decode(tags)) do
    gather(batch, key('tag', tag), id, id)
  end
  if origin ~= '' then
    gather(batch, key('created_by', cjson.decode(origin).actor), id, id)
  end
  -- As schedule() does, but gathered; a blocked job is scheduled when it is unblocked.
  if status == 'blocked' then
    -- not claimable yet
  elseif tonumber(run_at) <= now then
    local member, score = rank(run_at, id), -tonumber(priority)
    for _, k in ipairs(variants('ready', queue, job_type)) do
      gather(batch, k, score, member)
    end
  else
    for _, k in ipairs(variants('sched', queue, job_type)) do
      gather(batch, k, run_at, id)
    end
  end
  local counted = status .. ':' .. job_type
  batch.counts[counted] = (batch.counts[counted] or 0) + 1
  redis.call('XADD', key('events'), eid .. '-0', 'job_id', id, 'job_type', job_type,
    'queue', queue, 'type', 'added', 'status', status, 'at', at, 'data', '{}')
  redis.call('RPUSH', key('job', id, 'events'), eid)
  last_event = eid  -- announced after the script's body (see emit)
end

-- Write a batch's gathered index entries and counts.
local function flush_inserts(batch)
  for _, k in ipairs(batch.order) do
    call_sliced('ZADD', k, batch.members[k])
  end
  for field, n in pairs(batch.counts) do
    redis.call('HINCRBY', key('counts'), field, n)
  end
end
