-- put_api_key: store a new API key by the hash of its secret, refused (AQ_NAME_TAKEN) when an
-- active key has its name. ARGV: id, name, secret hash, key JSON (without the secret).
local id, name, hash = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', key('api_key_names'), name) == 1 then
  return redis.error_reply('AQ_NAME_TAKEN')
end
redis.call('HSET', key('api_keys'), id, ARGV[4])
redis.call('HSET', key('api_key_hashes'), hash, id)
redis.call('HSET', key('api_key_names'), name, id .. ' ' .. hash)
return 1
