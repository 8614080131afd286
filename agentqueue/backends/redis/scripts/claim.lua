-- claim: promote due scheduled jobs, then take up to `limit` ready jobs in claim order
-- (priority desc, run_at, id) for one queue (or any) and some job types (or all).
-- ARGV: now, worker, limit, lease (us), queue ('' = any), then the job types (none = all).
-- Returns {last event id (0: none), event counter, next due, job 1 (JSON array of its hash),
-- job 2, ...} in claim order. The event counter is the newest event id when the claim ran
-- (every event up to it is in the state the claim saw); next due is the earliest run_at (us) of
-- a pending job this filter could still take after the claim ('' when none): the answer of
-- next_due() for the same filter until another event is written.
local now = clock(ARGV[1])
local worker, limit, lease, queue = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]

-- Each job is promoted once, when the first claim after its run_at runs: O(log n) per job.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('sched', 'all'), '-inf', int(now))) do
  local f = redis.call('HMGET', key('job', id), 'queue', 'job_type', 'priority', 'run_at')
  for _, k in ipairs(variants('sched', f[1], f[2])) do
    redis.call('ZREM', k, id)
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

-- With job types, the head of each type's set, merged.
local sources = filter_sets('ready')
local heads = {}
for _, source in ipairs(sources) do
  local found = redis.call('ZRANGE', source, 0, limit - 1, 'WITHSCORES')
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

local out = {0, 0, ''}
local until_us = int(now + lease)
for i = 1, math.min(limit, #heads) do
  local id = int(tonumber(string.sub(heads[i][2], 18)))
  local jk = key('job', id)
  local f = redis.call('HMGET', jk, 'queue', 'job_type', 'run_at', 'status')
  for _, k in ipairs(variants('ready', f[1], f[2])) do
    redis.call('ZREM', k, heads[i][2])
  end
  -- Only pending jobs are ever in a ready set; the check keeps a damaged index from
  -- handing out a job twice.
  if f[4] == 'pending' then
    local attempts = redis.call('HINCRBY', jk, 'attempts', 1)
    redis.call('HSET', jk, 'status', 'processing', 'locked_by', worker,
      'lease_expires_at', until_us, 'started_at', int(now), 'updated_at', int(now),
      'cancel_requested', '0')
    redis.call('ZADD', key('leases'), until_us, id)
    move_status(id, f[2], 'pending', 'processing')
    out[1] = emit(id, f[2], f[1], 'claim', 'processing', now,
      cjson.encode({attempt = attempts, worker = worker}))
    table.insert(out, job_reply(id))
  end
end

-- What next_due() would answer now: the next ready job's run_at (from its member), else the
-- earliest scheduled one.
local due = nil
for _, source in ipairs(sources) do
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
