-- What happens when a job ends, shared by the scripts that end jobs (client.FLOW_SCRIPTS:
-- finish, rescue, cancel, suspend; retry for `retry_target`). The loader prepends it after
-- `_lib.lua` and `_insert.lua` (a dead letter is inserted as any job is).
--
-- A job added with `depends_on` is `blocked` (in no ready or scheduled set) until all its
-- prerequisites completed. `job:<id>:dependents` holds the ids of the jobs that depend on a
-- job, and the job's `has_dependents` flag says the set exists, so ending a job without
-- dependents costs one HGET.

-- Blocked dependents of a job that completed whose prerequisites have all completed now go
-- pending (a purged prerequisite had completed: purges delete only finished jobs, and a failed
-- or cancelled one cancels its dependents at once).
local function unblock_dependents(id, now)
  for _, dep in ipairs(redis.call('SMEMBERS', key('job', id, 'dependents'))) do
    local dk = key('job', dep)
    local f = redis.call('HMGET', dk, 'status', 'depends_on', 'queue', 'job_type', 'priority',
      'run_at')
    if f[1] == 'blocked' then
      local ready = true
      for _, p in ipairs(cjson.decode(f[2])) do
        local status = redis.call('HGET', key('job', int(p)), 'status')
        if status and status ~= 'completed' then
          ready = false
          break
        end
      end
      if ready then
        redis.call('HSET', dk, 'status', 'pending', 'updated_at', int(now))
        move_status(dep, f[4], 'blocked', 'pending')
        schedule(dep, f[3], f[4], f[5], f[6], now)
        emit(dep, f[4], f[3], 'unblock', 'pending', now, '{}')
      end
    end
  end
end

local function by_id(x, y)
  return tonumber(x) < tonumber(y)
end

-- Cancel the blocked dependents of a job that failed or was cancelled, with the reason, and
-- theirs in turn.
local function cancel_dependents(id, job_type, status, now)
  local frontier = {{id, job_type, status}}
  while #frontier > 0 do
    local next_frontier = {}
    for _, cause in ipairs(frontier) do
      local deps = redis.call('SMEMBERS', key('job', cause[1], 'dependents'))
      table.sort(deps, by_id)
      for _, dep in ipairs(deps) do
        local dk = key('job', dep)
        local f = redis.call('HMGET', dk, 'status', 'job_type', 'queue')
        if f[1] == 'blocked' then
          local message = 'job ' .. cause[1] .. ' (' .. cause[2] .. '), which this job depends on, '
            .. cause[3]
          redis.call('HSET', dk, 'status', 'cancelled', 'completed_at', int(now),
            'updated_at', int(now), 'failure_reason', 'dependency_failed', 'last_error', message)
          zadd(key('finished'), int(now), dep)
          move_status(dep, f[2], 'blocked', 'cancelled')
          emit(dep, f[2], f[3], 'cancel', 'cancelled', now, cjson.encode({
            from = 'blocked', reason = 'dependency_failed', dependency = tonumber(cause[1])}))
          table.insert(next_frontier, {dep, f[2], 'cancelled'})
        end
      end
    end
    frontier = next_frontier
  end
end

-- Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm): Redis Lua has no
-- os.date, and the dead-letter envelope carries an ISO time like the SQL stores' one.
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return y, m, d
end

-- Epoch microseconds as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (Python's isoformat, microseconds
-- always written).
local function iso_time(us)
  local seconds = math.floor(us / 1000000)
  local micros = us - seconds * 1000000
  local days = math.floor(seconds / 86400)
  local rest = seconds - days * 86400
  local y, m, d = civil(days)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00', y, m, d,
    math.floor(rest / 3600), math.floor(rest % 3600 / 60), rest % 60, micros)
end

-- Enqueue the dead-letter job of a job that failed for good: its stored spec is the
-- dead-letter job's own insert arguments; the payload is the envelope (models.DeadLetter).
local function enqueue_dead_letter(id, spec, now)
  local f = redis.call('HMGET', key('job', id), 'job_type', 'queue', 'payload', 'attempts',
    'tags', 'group', 'error_history')
  local history = f[7] or '[]'
  local errors = cjson.decode(history)
  local last = #errors > 0 and cjson.encode(errors[#errors]) or 'null'
  local args = cjson.decode(spec)
  args[3] = '{"job_id":' .. id .. ',"job_type":' .. cjson.encode(f[1]) .. ',"queue":'
    .. cjson.encode(f[2]) .. ',"payload":' .. f[3] .. ',"attempts":' .. f[4] .. ',"tags":'
    .. f[5] .. ',"group":' .. (f[6] and cjson.encode(f[6]) or 'null') .. ',"failed_at":"'
    .. iso_time(now) .. '","error":' .. last .. ',"error_history":' .. history .. '}'
  local new_id = int(redis.call('INCR', key('next_job_id')))
  local eid = int(redis.call('INCR', key('next_event_id')))
  local batch = new_inserts()
  insert_job(batch, args, 1, new_id, eid, now, 'pending')
  flush_inserts(batch)
end

-- Called by every script that ends a job (after the job's own event): settle its dependents
-- and enqueue its dead letter. `to` is the status it ended in; `f`, when the caller read them,
-- the job's `has_dependents` and `dead_letter` fields.
settle_ended = function(id, job_type, to, now, f)
  f = f or redis.call('HMGET', key('job', id), 'has_dependents', 'dead_letter')
  if f[1] == '1' then
    if to == 'completed' then
      unblock_dependents(id, now)
    elseif to == 'failed' or to == 'cancelled' then
      cancel_dependents(id, job_type, to, now)
    end
  end
  if to == 'failed' and f[2] then
    enqueue_dead_letter(id, f[2], now)
  end
end

-- Where a retried job goes: 'blocked' while a prerequisite has not completed, else 'pending';
-- or the error reply refusing the retry when a prerequisite failed or was cancelled.
local function retry_target(id)
  local depends_on = redis.call('HGET', key('job', id), 'depends_on')
  if not depends_on then
    return 'pending', nil
  end
  local target = 'pending'
  local prerequisites = cjson.decode(depends_on)
  table.sort(prerequisites)
  for _, p in ipairs(prerequisites) do
    local status = redis.call('HGET', key('job', int(p)), 'status')
    if status == 'failed' or status == 'cancelled' then
      return nil, redis.error_reply('AQ_DEPENDENCY ' .. int(p) .. ' ' .. status)
    end
    if status and status ~= 'completed' then
      target = 'blocked'
    end
  end
  return target, nil
end
