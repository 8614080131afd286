-- heartbeat: extend the leases this worker still holds.
-- ARGV: now, worker, lease (us), then job id and attempt pairs.
-- Returns {{lost job ids}, {held job ids whose cancel was requested}}.
local now = clock(ARGV[1])
local worker = ARGV[2]
local until_us = int(now + tonumber(ARGV[3]))
local lost, cancel = {}, {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  if held(id, worker, ARGV[i + 1]) then
    local jk = key('job', id)
    redis.call('HSET', jk, 'lease_expires_at', until_us)
    redis.call('ZADD', key('leases'), until_us, id)
    if redis.call('HGET', jk, 'cancel_requested') == '1' then
      table.insert(cancel, id)
    end
  else
    table.insert(lost, id)
  end
end
return {lost, cancel}
