-- claim: promote due scheduled jobs, then take up to `limit` ready jobs in claim order
-- (priority desc, run_at, id) for one queue (or any) and some job types (or all).
-- ARGV: now, worker, limit (0: claim nothing, answer next due), lease (us), queue ('' = any),
-- then the job types (none = all).
-- Returns {last event id (0: none), event counter, next due, job 1 (JSON array of its hash),
-- job 2, ...} in claim order. The event counter is the newest event id when the claim ran
-- (every event up to it is in the state the claim saw); next due is the earliest run_at (us) of
-- a pending job this filter could still take after the claim ('' when none): the answer of
-- next_due() for the same filter until another event is written.
local now = clock(ARGV[1])
local worker, limit, lease, queue = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
-- Index writes are gathered (one ZADD / ZREM / HINCRBY per key for the batch) and flushed
-- before each read of the ready or scheduled sets.
gather_writes()

-- Each job is promoted once, when the first claim after its run_at runs: O(log n) per job.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('sched', 'all'), '-inf', int(now))) do
  local f = redis.call('HMGET', key('job', id), 'queue', 'job_type', 'priority', 'run_at')
  for _, k in ipairs(variants('sched', f[1], f[2])) do
    zrem(k, id)
  end
  schedule(id, f[1], f[2], f[3], f[4], now)
end

-- The ready (or scheduled) set serving this filter; with job types, one set per type.
local function filter_sets(kind)
  local sets = {}
  if #ARGV < 6 then
    table.insert(sets, queue == '' and key(kind, 'all') or key(kind, 'q', queue))
  else
    for i = 6, #ARGV do
      local job_type = ARGV[i]
      if queue == '' then
        table.insert(sets, key(kind, 't', job_type))
      else
        table.insert(sets, key(kind, 'qt', #queue .. ':' .. queue, job_type))
      end
    end
  end
  return sets
end

local sources = filter_sets('ready')

-- The first `n` entries of the filter's ready sets, merged in claim order, and whether a set
-- may hold more.
local function heads_upto(n)
  flush_gathered()
  local heads, more = {}, false
  for _, source in ipairs(sources) do
    local found = redis.call('ZRANGE', source, 0, n - 1, 'WITHSCORES')
    more = more or #found == 2 * n
    for i = 1, #found, 2 do
      table.insert(heads, {tonumber(found[i + 1]), found[i]})
    end
  end
  if #sources > 1 then
    table.sort(heads, function(x, y)
      if x[1] ~= y[1] then
        return x[1] < y[1]
      end
      return x[2] < y[2]
    end)
  end
  return heads, more
end

local out = {0, 0, ''}
local until_us = int(now + lease)

-- Take one ready job (its member `member`, its HMGET fields `f`) for this worker.
local function take_job(member, id, f)
  local jk = key('job', id)
  for _, k in ipairs(variants('ready', f[1], f[2])) do
    zrem(k, member)
  end
  local attempts = tonumber(f[6] or '0') + 1
  redis.call('HSET', jk, 'status', 'processing', 'locked_by', worker,
    'lease_expires_at', until_us, 'started_at', int(now), 'updated_at', int(now),
    'cancel_requested', '0', 'attempts', int(attempts))
  zadd(key('leases'), until_us, id)
  move_status(id, f[2], 'pending', 'processing', f[5])
  out[1] = emit(id, f[2], f[1], 'claim', 'processing', now,
    cjson.encode({attempt = attempts, worker = worker,
      waited = math.max(now - tonumber(f[3]), 0) / 1000000}))
  table.insert(out, job_reply(id))
end

-- Only pending jobs are ever in a ready set; a member of any other job (a damaged index) is
-- dropped, never handed out twice.
local function drop_stale(member, f)
  for _, k in ipairs(variants('ready', f[1], f[2])) do
    zrem(k, member)
  end
end

local FIELDS = {'queue', 'job_type', 'run_at', 'status', 'group', 'attempts'}
local limits_raw = redis.call('HGETALL', key('limits'))
local due = nil

if #limits_raw == 0 then
  -- No flow limits: the first `limit` jobs in claim order (none: only next due is wanted).
  local heads = limit > 0 and heads_upto(limit) or {}
  for i = 1, math.min(limit, #heads) do
    local member = heads[i][2]
    local id = int(tonumber(string.sub(member, 18)))
    local f = redis.call('HMGET', key('job', id), unpack(FIELDS))
    if f[4] == 'pending' then
      take_job(member, id, f)
    else
      drop_stale(member, f)
    end
  end
else
  -- Flow limits (limits.py has the model): a job whose type or group is full is skipped, never
  -- blocks the jobs behind it; the scan looks up to MAX_SCAN entries down. Each limit is a JSON
  -- object under `<scope>:<key>` (absent fields: no such limit).
  local MAX_SCAN = 1000
  local types, groups, any_group = {}, {}, nil
  for i = 1, #limits_raw, 2 do
    local scope, name = string.match(limits_raw[i], '^([^:]+):(.*)$')
    local lim = cjson.decode(limits_raw[i + 1])
    if scope == 'job_type' then
      types[name] = lim
    elseif name == '*' then
      any_group = lim
    else
      groups[name] = lim
    end
  end
  local running, starts = {}, {}

  local function running_of(scope, name)
    local k = scope .. ':' .. name
    if running[k] == nil then
      local n
      if scope == 'job_type' then
        n = redis.call('HGET', key('counts'), 'processing:' .. name)
      else
        n = redis.call('HGET', key('running_groups'), name)
      end
      running[k] = tonumber(n or '0')
    end
    return running[k]
  end

  -- Starts inside the sliding window (older ones are dropped here).
  local function starts_of(scope, name, lim)
    local k = scope .. ':' .. name
    if starts[k] == nil then
      local rk = key('rate', scope, name)
      redis.call('ZREMRANGEBYSCORE', rk, '-inf', int(now - lim.rate_period * 1000000))
      starts[k] = redis.call('ZCARD', rk)
    end
    return starts[k]
  end

  -- 'ok', 'full' (paused or at max_concurrent: a change opens it) or 'rate' and when the
  -- window admits again.
  local function check(scope, name, lim)
    if not lim then
      return 'ok', nil
    end
    if lim.paused then
      return 'full', nil
    end
    if lim.max_concurrent and running_of(scope, name) >= lim.max_concurrent then
      return 'full', nil
    end
    if lim.rate_limit then
      local n = starts_of(scope, name, lim)
      if n >= lim.rate_limit then
        local oldest = redis.call('ZRANGE', key('rate', scope, name), n - lim.rate_limit,
          n - lim.rate_limit, 'WITHSCORES')
        return 'rate', tonumber(oldest[2]) + lim.rate_period * 1000000
      end
    end
    return 'ok', nil
  end

  local function group_limit(group)
    if not group then
      return nil
    end
    return groups[group] or any_group
  end

  local function admit(job_type, group)
    local v1, w1 = check('job_type', job_type, types[job_type])
    if v1 == 'full' then
      return 'full', nil
    end
    local v2, w2 = 'ok', nil
    if group then
      v2, w2 = check('group', group, group_limit(group))
    end
    if v2 == 'full' then
      return 'full', nil
    end
    if v1 == 'rate' or v2 == 'rate' then
      return 'rate', math.max(w1 or 0, w2 or 0)
    end
    return 'ok', nil
  end

  local function count_start(id, scope, name, lim)
    if not lim then
      return
    end
    running[scope .. ':' .. name] = running_of(scope, name) + 1
    if lim.rate_limit then
      starts_of(scope, name, lim)
      redis.call('ZADD', key('rate', scope, name), int(now), int(now) .. ':' .. id)
      starts[scope .. ':' .. name] = starts[scope .. ':' .. name] + 1
    end
  end

  local visited, claimed, scanned = {}, 0, 0
  local more_at, reopen, capped, done = nil, nil, false, false
  local window = math.min(math.max(limit * 2 + 8, 32), MAX_SCAN)
  while not done do
    local heads, more = heads_upto(window)
    for _, h in ipairs(heads) do
      local member = h[2]
      if not visited[member] then
        visited[member] = true
        scanned = scanned + 1
        local id = int(tonumber(string.sub(member, 18)))
        local f = redis.call('HMGET', key('job', id), unpack(FIELDS))
        if f[4] ~= 'pending' then
          drop_stale(member, f)
        else
          local verdict, when = admit(f[2], f[5])
          if verdict == 'ok' then
            if claimed < limit then
              take_job(member, id, f)
              count_start(id, 'job_type', f[2], types[f[2]])
              if f[5] then
                count_start(id, 'group', f[5], group_limit(f[5]))
              end
              claimed = claimed + 1
            else
              more_at = tonumber(f[3])
              done = true
              break
            end
          elseif verdict == 'rate' and (reopen == nil or when < reopen) then
            reopen = when
          end
        end
        if scanned >= MAX_SCAN then
          capped = true
          done = true
          break
        end
      end
    end
    if not more or window >= MAX_SCAN then
      done = true  -- every ready job of the filter was looked at (or as many as a scan may)
      capped = capped or (more and more_at == nil)
    end
    window = math.min(window * 2, MAX_SCAN)
  end
  due = more_at
  if reopen and (due == nil or reopen < due) then
    due = reopen
  end
  if capped and due == nil then
    due = now + 100000  -- more jobs than one scan looks at: look again soon
  end
end

-- What next_due() would answer now: the next ready job's run_at (from its member), else the
-- earliest scheduled one; under flow limits, the next job they admit (from the scan above).
flush_gathered()
for _, source in ipairs(#limits_raw == 0 and sources or {}) do
  local head = redis.call('ZRANGE', source, 0, 0)[1]
  if head then
    local run_at = tonumber(string.sub(head, 1, 16))
    if due == nil or run_at < due then
      due = run_at
    end
  end
end
for _, k in ipairs(filter_sets('sched')) do
  local head = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')[2]
  if head and (due == nil or tonumber(head) < due) then
    due = tonumber(head)
  end
end
out[2] = redis.call('GET', key('next_event_id')) or '0'
out[3] = due and int(due) or ''
return out
