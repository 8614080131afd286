-- read_tokens (read-only): tokens newest first (created_at desc, then id desc), filtered.
-- ARGV: limit, job id ('' = any), statuses (',a,b,'; '' = any), tags given ('1'/'0'), then
-- the tags (a token matches when it has any of them).
-- Walks the smallest candidate index (the job's tokens, the tags' sets, the statuses' sets,
-- or all tokens), merging several sets newest first, until `limit` tokens match.
-- Returns one JSON array of [field, value, ...] arrays.
local limit, job_id, statuses, has_tags = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4] == '1'
local wanted = {}
for i = 5, #ARGV do
  wanted[ARGV[i]] = true
end

local function matches(t)
  if statuses ~= '' and not string.find(statuses, ',' .. t.status .. ',', 1, true) then
    return false
  end
  if job_id ~= '' and t.job_id ~= job_id then
    return false
  end
  if has_tags then
    for _, tag in ipairs(cjson.decode(t.tags)) do
      if wanted[tag] then
        return true
      end
    end
    return false
  end
  return true
end

-- Candidate sets: each option alone holds every token that can match.
local options = {{key('tokens')}}
if job_id ~= '' then
  table.insert(options, {key('job', job_id, 'tokens')})
end
if has_tags then
  local sets = {}
  for i = 5, #ARGV do
    table.insert(sets, key('token_tag', ARGV[i]))
  end
  table.insert(options, sets)
end
if statuses ~= '' then
  local sets = {}
  for s in string.gmatch(statuses, '[^,]+') do
    table.insert(sets, key('token_status', s))
  end
  table.insert(options, sets)
end
local sources, smallest = nil, nil
for _, option in ipairs(options) do
  local size = 0
  for _, k in ipairs(option) do
    size = size + redis.call('ZCARD', k)
  end
  if not smallest or size < smallest then
    sources, smallest = option, size
  end
end

-- Each set is read newest first, a page at a time (by rank; the script sees one snapshot).
local PAGE = 200
local cursors = {}
for _, k in ipairs(sources) do
  table.insert(cursors, {key = k, offset = 0, items = {}, pos = 1, done = false})
end
local function head(c)
  if c.pos > #c.items then
    if c.done then
      return nil
    end
    local found = redis.call('ZREVRANGE', c.key, c.offset, c.offset + PAGE - 1, 'WITHSCORES')
    c.offset = c.offset + PAGE
    c.done = #found < 2 * PAGE
    c.items, c.pos = {}, 1
    for i = 1, #found, 2 do
      table.insert(c.items, {found[i], tonumber(found[i + 1])})
    end
    if #c.items == 0 then
      return nil
    end
  end
  return c.items[c.pos]
end
-- Ties on created_at go to the greater id, compared byte by byte as sorted sets order them
-- (Lua's `>` on strings follows the server's locale).
local function newer(a, b)
  if a[2] ~= b[2] then
    return a[2] > b[2]
  end
  local x, y = a[1], b[1]
  for i = 1, math.min(#x, #y) do
    local p, q = string.byte(x, i), string.byte(y, i)
    if p ~= q then
      return p > q
    end
  end
  return #x > #y
end

local out, seen = {}, {}
while #out < limit do
  local best, from = nil, nil
  for _, c in ipairs(cursors) do
    local item = head(c)
    if item and (not best or newer(item, best)) then
      best, from = item, c
    end
  end
  if not best then
    break
  end
  from.pos = from.pos + 1
  local tid = best[1]
  if not seen[tid] then
    seen[tid] = true
    local flat = redis.call('HGETALL', key('token', tid))
    if #flat > 0 then
      local t = {}
      for i = 1, #flat, 2 do
        t[flat[i]] = flat[i + 1]
      end
      if matches(t) then
        table.insert(out, flat)
      end
    end
  end
end
if #out == 0 then
  return '[]'
end
return cjson.encode(out)
