-- revoke_api_key: revoke the active key of a name. ARGV: revoked_at (ISO 8601), name.
-- Returns the revoked key's JSON, or '' when no active key has the name.
local found = redis.call('HGET', key('api_key_names'), ARGV[2])
if not found then
  return ''
end
local id, hash = string.match(found, '^(%S+) (%S+)$')
local k = cjson.decode(redis.call('HGET', key('api_keys'), id))
k.revoked_at = ARGV[1]
local stored = cjson.encode(k)
redis.call('HSET', key('api_keys'), id, stored)
redis.call('HDEL', key('api_key_hashes'), hash)
redis.call('HDEL', key('api_key_names'), ARGV[2])
return stored
