-- read_jobs (read-only): the hashes of some jobs, for list_jobs.
-- ARGV: job ids. Returns one JSON array of [field, value, ...] arrays (missing jobs skipped),
-- one string to parse instead of thousands of RESP items.
local found = {}
for i = 1, #ARGV do
  local fields = redis.call('HGETALL', key('job', ARGV[i]))
  if #fields > 0 then
    table.insert(found, fields)
  end
end
if #found == 0 then
  return '[]'
end
return cjson.encode(found)
