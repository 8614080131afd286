-- purge: delete up to `limit` finished jobs (completed, failed, cancelled) whose completed_at
-- is before a time, with everything of theirs, and up to `limit` events older than a time.
-- ARGV: finished before (epoch us, '' = skip), events before (epoch us, '' = skip), limit,
-- then any job ids to delete as well (if finished: `delete_jobs`).
-- Returns {jobs deleted, events deleted for their age, the ids of ARGV[4..] deleted...}.
local limit = tonumber(ARGV[3])

-- unpack() is bounded by Lua's C stack: delete long lists in slices.
local function xdel_all(ids)
  for start = 1, #ids, 1000 do
    redis.call('XDEL', key('events'), unpack(ids, start, math.min(start + 999, #ids)))
  end
end

local function delete_token(tid)
  local tk = key('token', tid)
  local t = redis.call('HMGET', tk, 'status', 'tags')
  if t[1] then
    redis.call('ZREM', key('tokens'), tid)
    redis.call('ZREM', key('token_status', t[1]), tid)
    redis.call('ZREM', key('token_expiry'), tid)
    for _, tag in ipairs(cjson.decode(t[2])) do
      redis.call('ZREM', key('token_tag', tag), tid)
    end
  end
  redis.call('DEL', tk, key('token_waiters', tid))
end

local FINISHED = {completed = true, failed = true, cancelled = true}

-- Delete one job and everything that names it; false when it is not finished (any more).
local function delete_job(id)
  local jk = key('job', id)
  local f = redis.call('HMGET', jk, 'status', 'job_type', 'queue', 'tags', 'idempotency_key',
    'origin')
  local status, job_type, queue = f[1], f[2], f[3]
  redis.call('ZREM', key('finished'), id)
  if not FINISHED[status] then
    return false  -- retried since it was indexed (retry removes it; kept for safety)
  end
  local events = {}
  for _, eid in ipairs(redis.call('LRANGE', key('job', id, 'events'), 0, -1)) do
    table.insert(events, eid .. '-0')
  end
  xdel_all(events)
  for _, tid in ipairs(redis.call('ZRANGE', key('job', id, 'tokens'), 0, -1)) do
    delete_token(tid)
  end
  redis.call('DEL', jk, key('job', id, 'events'), key('job', id, 'steps'),
    key('job', id, 'tokens'), key('job', id, 'token_steps'), key('job', id, 'dependents'))
  redis.call('ZREM', key('all'), id)
  redis.call('ZREM', key('status', status), id)
  redis.call('ZREM', key('type', job_type), id)
  redis.call('ZREM', key('queue', queue), id)
  for _, tag in ipairs(cjson.decode(f[4])) do
    redis.call('ZREM', key('tag', tag), id)
  end
  if f[6] then
    redis.call('ZREM', key('created_by', cjson.decode(f[6]).actor), id)
  end
  local counted = status .. ':' .. job_type
  if redis.call('HINCRBY', key('counts'), counted, -1) <= 0 then
    redis.call('HDEL', key('counts'), counted)
  end
  if f[5] then
    -- The key is free again, as in the SQL stores (its job is gone).
    local idem = key('idem', #job_type .. ':' .. job_type, f[5])
    if redis.call('GET', idem) == id then
      redis.call('DEL', idem)
    end
  end
  return true
end

local jobs = 0
local named = {}
for i = 4, #ARGV do
  if delete_job(ARGV[i]) then
    jobs = jobs + 1
    table.insert(named, ARGV[i])
  end
end
if ARGV[1] ~= '' then
  local old = redis.call('ZRANGEBYSCORE', key('finished'), '-inf', '(' .. ARGV[1],
    'LIMIT', 0, limit)
  for _, id in ipairs(old) do
    if delete_job(id) then
      jobs = jobs + 1
    end
  end
end

-- Events: stream ids are event ids (commit order), not times, so the oldest events are read
-- from the head of the stream and deleted up to the first one that is recent enough (times
-- follow commit order, except when callers pass their own clock). Each job's history list
-- loses the same ids, which are at its head.
local events = 0
if ARGV[2] ~= '' then
  local before = tonumber(ARGV[2])
  local last = nil
  local per_job, order = {}, {}
  for _, entry in ipairs(redis.call('XRANGE', key('events'), '-', '+', 'COUNT', limit)) do
    local fields, at, job = entry[2], nil, nil
    for i = 1, #fields, 2 do
      if fields[i] == 'at' then
        at = fields[i + 1]
      elseif fields[i] == 'job_id' then
        job = fields[i + 1]
      end
    end
    if tonumber(at) >= before then
      break
    end
    last = tonumber(string.match(entry[1], '^(%d+)'))
    if not per_job[job] then
      per_job[job] = 0
      table.insert(order, job)
    end
    per_job[job] = per_job[job] + 1
  end
  if last then
    events = redis.call('XTRIM', key('events'), 'MINID', int(last + 1) .. '-0')
    for _, job in ipairs(order) do
      local lk = key('job', job, 'events')
      local drop = 0
      for _, eid in ipairs(redis.call('LRANGE', lk, 0, per_job[job] - 1)) do
        if tonumber(eid) <= last then
          drop = drop + 1
        end
      end
      if drop > 0 then
        redis.call('LTRIM', lk, drop, -1)
      end
    end
  end
end
local out = {jobs, events}
for _, id in ipairs(named) do
  table.insert(out, id)
end
return out
