-- write_audit: append one audit record to the `audit` stream as entry `<id>-0`.
-- ARGV: the record as JSON (without its id).
-- Returns the record's id.
local id = int(redis.call('INCR', key('next_audit_id')))
redis.call('XADD', key('audit'), id .. '-0', 'record', ARGV[1])
return id
