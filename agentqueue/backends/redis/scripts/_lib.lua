-- Helpers shared by every agentqueue script. The loader (client.py) makes each script a Redis
-- function library: this file, the script's helper files, then the script's body as the
-- function's callback. The helpers are defined once, when the library is loaded, not on every
-- call as an EVAL script's would be; every call starts with `begin(keys)`, which resets the
-- per-call state below. A function without the `allow-oom` flag is refused as a whole when
-- Redis is out of memory, instead of failing half-way through its writes.
--
-- keys[1] is the hash tag `{prefix}`; every key is `{prefix}:...`, so all keys of a queue live
-- in one cluster slot and Redis Cluster routes each call by it. Key names are built here;
-- keys.py documents them and builds the same names for reads.
local T = nil  -- the call's hash tag (set by `begin`)

local function key(...)
  return T .. ':' .. table.concat({...}, ':')
end

-- Lua numbers are doubles and tostring() keeps only 14 digits: format every integer we write.
local function int(n)
  return string.format('%d', n)
end

-- The caller's time (epoch microseconds) when it passes one (tests with a frozen clock), else
-- the server's clock, so every client agrees on lease times.
local function clock(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Ready sets order jobs by score = -priority, then by this member, which sorts as text:
-- zero-padded run_at then id. run_at is clamped to 1970..2255 for ordering only.
local MAX_RANK = 9000000000000000
local function rank(run_at, id)
  local r = tonumber(run_at)
  if r < 0 then r = 0 elseif r > MAX_RANK then r = MAX_RANK end
  return string.format('%016d:%016d', r, tonumber(id))
end

-- One sorted set per claim filter: any queue, one queue, one job type, queue and job type.
-- The queue is length-prefixed in the last one: queue and job-type names may contain ':'.
-- Memoized per call: a batch names the same few (queue, job type) pairs over and over.
local variant_keys = {}
local function variants(kind, queue, job_type)
  local id = kind .. '\0' .. queue .. '\0' .. job_type
  local found = variant_keys[id]
  if not found then
    found = {
      key(kind, 'all'),
      key(kind, 'q', queue),
      key(kind, 't', job_type),
      key(kind, 'qt', #queue .. ':' .. queue, job_type),
    }
    variant_keys[id] = found
  end
  return found
end

-- Index writes (sorted-set members, hash counters) of a script that changes many jobs at once,
-- gathered and then written with one ZADD / ZREM / HINCRBY per key and field
-- (`flush_gathered`): each redis.call costs more than the work it does on a sorted set. nil:
-- each write is made at once. A script turns gathering on with `gather_writes()` and flushes
-- before it reads an index it may have gathered writes for; the loader flushes after the body.
-- A member's last gathered change wins, as if the calls had been made in order.
local gathered = nil

local function gather_writes()
  gathered = {sets = {}, set_order = {}, counts = {}, count_order = {}}
end

-- The table under `k` in `map`, made empty (and `k` appended to `order`) on first use: the
-- gathered writes of one key, kept in the order keys were first written.
local function entry(map, order, k)
  local found = map[k]
  if not found then
    found = {}
    map[k] = found
    table.insert(order, k)
  end
  return found
end

local function zadd(k, score, member)
  if gathered then
    entry(gathered.sets, gathered.set_order, k)[member] = score
  else
    redis.call('ZADD', k, score, member)
  end
end

local function zrem(k, member)
  if gathered then
    entry(gathered.sets, gathered.set_order, k)[member] = false
  else
    redis.call('ZREM', k, member)
  end
end

local function hincrby(k, field, n)
  if gathered then
    local fields = entry(gathered.counts, gathered.count_order, k)
    fields[field] = (fields[field] or 0) + n
  else
    redis.call('HINCRBY', k, field, n)
  end
end

-- Run `command key items...` in slices: unpack() is bounded by Lua's C stack.
local function call_sliced(command, k, items)
  for start = 1, #items, 2000 do
    redis.call(command, k, unpack(items, start, math.min(start + 1999, #items)))
  end
end

-- Write the gathered index changes (gathering stays on, with nothing gathered).
local function flush_gathered()
  if not gathered then
    return
  end
  for _, k in ipairs(gathered.set_order) do
    local adds, removes = {}, {}
    for member, score in pairs(gathered.sets[k]) do
      if score then
        table.insert(adds, score)
        table.insert(adds, member)
      else
        table.insert(removes, member)
      end
    end
    if #removes > 0 then
      call_sliced('ZREM', k, removes)
    end
    if #adds > 0 then
      call_sliced('ZADD', k, adds)
    end
  end
  for _, k in ipairs(gathered.count_order) do
    for field, n in pairs(gathered.counts[k]) do
      if n ~= 0 then
        redis.call('HINCRBY', k, field, n)
      end
    end
  end
  gather_writes()
end

-- Index a pending job: due ones in the ready sets (claim order), later ones in the scheduled
-- sets (by run_at) until a claim promotes them.
local function schedule(id, queue, job_type, priority, run_at, now)
  if tonumber(run_at) <= now then
    local member = rank(run_at, id)
    local score = -tonumber(priority)
    for _, k in ipairs(variants('ready', queue, job_type)) do
      zadd(k, score, member)
    end
  else
    for _, k in ipairs(variants('sched', queue, job_type)) do
      zadd(k, run_at, id)
    end
  end
end

local function unschedule(id, queue, job_type, run_at)
  local member = rank(run_at, id)
  for _, k in ipairs(variants('ready', queue, job_type)) do
    zrem(k, member)
  end
  for _, k in ipairs(variants('sched', queue, job_type)) do
    zrem(k, id)
  end
end

-- Keep the per-status index and the (status, job type) counts of stats() in step, and the
-- processing jobs per group (`running_groups`), which group limits count; the counts'
-- `processing:<job type>` are what job-type limits count. `group`: the job's group when the
-- caller has read it (false: none), nil to look it up.
local function move_status(id, job_type, from, to, group)
  if from == to then
    return
  end
  if from then
    zrem(key('status', from), id)
    hincrby(key('counts'), from .. ':' .. job_type, -1)
  end
  zadd(key('status', to), id, id)
  hincrby(key('counts'), to .. ':' .. job_type, 1)
  if from == 'processing' or to == 'processing' then
    if group == nil then
      group = redis.call('HGET', key('job', id), 'group')
    end
    if group then
      hincrby(key('running_groups'), group, to == 'processing' and 1 or -1)
    end
  end
end

-- The newest event id this script wrote, as text (nil: none). The loader runs each writing
-- script's body as a function, then `announce()` publishes this id once on the `changes` shard
-- channel, which every process's change watcher subscribes to (events.py): one small message
-- per script, however many events it wrote.
local last_event = nil

-- Write one job event: the next event id, an entry `<id>-0` of the events stream (so the
-- stream id is the feed cursor) and the id in the job's own history list.
local function emit(id, job_type, queue, type, status, at, data)
  local eid = int(redis.call('INCR', key('next_event_id')))
  redis.call('XADD', key('events'), eid .. '-0', 'job_id', id, 'job_type', job_type,
    'queue', queue, 'type', type, 'status', status, 'at', int(at), 'data', data)
  redis.call('RPUSH', key('job', id, 'events'), eid)
  last_event = eid
  return eid
end

-- A change that is no job event but may let waiting jobs run (a flow limit): an entry of the
-- events stream marked `control` (readers of the feed skip it), so that workers blocked on the
-- stream (RedisClient.run_after_change) and the change watchers all wake.
local function announce_control(now)
  local eid = int(redis.call('INCR', key('next_event_id')))
  redis.call('XADD', key('events'), eid .. '-0', 'job_id', '0', 'control', '1', 'at', int(now))
  last_event = eid
  return eid
end

-- Called by the loader after the body: announce the script's events, if it wrote any.
local function announce()
  if last_event then
    redis.call('SPUBLISH', key('changes'), last_event)
  end
end

-- Called by the loader before the body: the call's prefix, and no state left from the last
-- call (a library's locals live as long as the library).
local function begin(keys)
  T = keys[1]
  variant_keys = {}
  gathered = nil
  last_event = nil
end

-- A worker write applies only while the job is processing under that worker and attempt.
local function held(id, worker, attempt)
  local f = redis.call('HMGET', key('job', id), 'status', 'locked_by', 'attempts')
  return f[1] == 'processing' and f[2] == worker and f[3] == attempt
end

-- Append one JSON error record (text from the client) to a JSON array (text).
local function append_json(array, item)
  if array == nil or array == '[]' then
    return '[' .. item .. ']'
  end
  return string.sub(array, 1, -2) .. ',' .. item .. ']'
end

-- Set by `_flow.lua` in the scripts that end jobs: settles the dependents and the dead letter
-- of a job that just ended (id, job type, status it ended in, now).
local settle_ended = nil

local AFTER = {complete = 'completed', retry = 'pending', fail = 'failed',
  release = 'pending', cancel = 'cancelled'}
local EVENT = {complete = 'complete', retry = 'retry_later', fail = 'fail',
  release = 'release', cancel = 'cancel'}

-- Apply one attempt outcome to a job whose lease the caller has checked. `o` holds the
-- client's encoded values: output, error (JSON record or ''), message, reason, retry_in (us),
-- data (the event's JSON). Returns the newest event id written (the job's own event, then
-- those of settling it).
local function apply_outcome(id, kind, o, now, event_type)
  local jk = key('job', id)
  local f = redis.call('HMGET', jk, 'job_type', 'queue', 'priority', 'status',
    'error_history', 'attempts', 'cancel_requested', 'run_at', 'group', 'has_dependents',
    'dead_letter')
  if (kind == 'retry' or kind == 'release') and f[7] == '1' then
    -- The attempt ended (failed, released, or its worker died) before the handler acted on
    -- the cancel request: back to pending, the next claim would clear it and run the job again.
    kind = 'cancel'
    event_type = 'cancel'
  end
  local job_type, queue, status = f[1], f[2], f[4]
  local to = AFTER[kind]
  local set = {'status', to, 'updated_at', int(now)}
  local drop = {'lease_expires_at'}
  local run_at = nil
  if kind == 'complete' then
    table.insert(set, 'output'); table.insert(set, o.output)
    table.insert(set, 'progress'); table.insert(set, '100')
  end
  if kind == 'complete' or kind == 'fail' or kind == 'cancel' then
    table.insert(set, 'completed_at'); table.insert(set, int(now))
  end
  if o.error ~= '' then
    table.insert(set, 'error_history'); table.insert(set, append_json(f[5], o.error))
    table.insert(set, 'last_error'); table.insert(set, o.message)
    table.insert(set, 'failure_reason'); table.insert(set, o.reason)
  end
  if kind == 'release' then
    -- Shutdown: the attempt did not really happen, so it is given back. Released and rescued
    -- jobs keep their run_at: due first, they go back to the head of their priority.
    table.insert(set, 'attempts'); table.insert(set, int(tonumber(f[6]) - 1))
    run_at = tonumber(f[8])
  elseif kind == 'retry' and event_type == 'rescue' then
    run_at = tonumber(f[8])
  elseif kind == 'retry' then
    run_at = now + tonumber(o.retry_in)
  end
  if run_at then
    table.insert(set, 'run_at'); table.insert(set, int(run_at))
    table.insert(drop, 'locked_by')
  end
  redis.call('HSET', jk, unpack(set))
  redis.call('HDEL', jk, unpack(drop))
  zrem(key('leases'), id)
  move_status(id, job_type, status, to, f[9])
  if run_at then
    schedule(id, queue, job_type, f[3], int(run_at), now)
  else
    zadd(key('finished'), int(now), id)  -- ended: the purge's index
  end
  emit(id, job_type, queue, event_type or EVENT[kind], to, now, o.data)
  if not run_at and settle_ended then
    settle_ended(id, job_type, to, now, {f[10], f[11]})
  end
  return last_event
end

-- Operator changes check the transition table's allowed sources, passed in by the client as
-- ',pending,waiting,' (the table lives in states.py, not here). Errors are raised before any
-- write: a script is not rolled back.
local function check_source(id, allowed)
  local status = redis.call('HGET', key('job', id), 'status')
  if not status then
    return nil, redis.error_reply('AQ_NOT_FOUND')
  end
  if not string.find(allowed, ',' .. status .. ',', 1, true) then
    return nil, redis.error_reply('AQ_INVALID ' .. status)
  end
  return status, nil
end

-- A job's hash as one JSON array of field, value, ...: one string to parse instead of dozens
-- of RESP items (a pure-Python RESP parser spends most of a claim's time on those).
local function job_reply(id)
  return cjson.encode(redis.call('HGETALL', key('job', id)))
end
