-- create_token: store a pending token, or return the one the same job step created before
-- (a replayed handler must not mint a second token). Check and insert run in this one script,
-- so two racing calls for one (job, step) get one token.
-- ARGV: now, token id, job id ('' = none), step ('' = none), expires_at (epoch us, '' =
-- never), tags (JSON list, unique), then the tags one by one.
-- Returns {1 (created) or 0 (existing), token (JSON array)}; refuses an id taken by a token
-- of another job or step with AQ_TOKEN_TAKEN.
local now = clock(ARGV[1])
local tid, job_id, step, expires_at = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local memo = nil
if job_id ~= '' and step ~= '' then
  memo = key('job', job_id, 'token_steps')
  local found = redis.call('HGET', memo, step)
  if found then
    return {0, token_reply(found)}
  end
end
local tk = key('token', tid)
local same = redis.call('HMGET', tk, 'status', 'job_id', 'step')
if same[1] then
  if (same[2] or '') == job_id and (same[3] or '') == step then
    return {0, token_reply(tid)}  -- the same call again (a standalone token's retry)
  end
  return redis.error_reply('AQ_TOKEN_TAKEN')
end
local created = int(now)
local fields = {'id', tid, 'status', 'pending', 'created_at', created, 'tags', ARGV[6]}
if job_id ~= '' then
  table.insert(fields, 'job_id'); table.insert(fields, job_id)
  redis.call('ZADD', key('job', job_id, 'tokens'), created, tid)
end
if step ~= '' then
  table.insert(fields, 'step'); table.insert(fields, step)
end
if expires_at ~= '' then
  table.insert(fields, 'expires_at'); table.insert(fields, expires_at)
  redis.call('ZADD', key('token_expiry'), expires_at, tid)
end
redis.call('HSET', tk, unpack(fields))
if memo then
  redis.call('HSET', memo, step, tid)
end
redis.call('ZADD', key('tokens'), created, tid)
redis.call('ZADD', key('token_status', 'pending'), created, tid)
for i = 7, #ARGV do
  redis.call('ZADD', key('token_tag', ARGV[i]), created, tid)
end
return {1, token_reply(tid)}
