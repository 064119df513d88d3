-- KEYS[1]: a stream. ARGV[1]: a group; ARGV[2]: an entry ID.
-- Copies the still-pending entry to the stream's end (with requeued_from and requeue_count)
-- and acks the original, in one step.
-- Reply: the copy's ID; 0 when the entry is no longer pending (acked or claimed meanwhile),
-- -1 when its data is gone. The wire's field names are filled in by scripts.py.
local pending = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then return 0 end
local found = redis.call("XRANGE", KEYS[1], ARGV[2], ARGV[2])
if #found == 0 then return -1 end
local fields, count = {}, 1
for i = 1, #found[1][2], 2 do
  local name = found[1][2][i]
  if name == "$requeued_from" then
  elseif name == "$requeue_count" then count = (tonumber(found[1][2][i + 1]) or 0) + 1
  else
    fields[#fields + 1] = name
    fields[#fields + 1] = found[1][2][i + 1]
  end
end
fields[#fields + 1] = "$requeued_from"; fields[#fields + 1] = ARGV[2]
fields[#fields + 1] = "$requeue_count"; fields[#fields + 1] = tostring(count)
local new_id = redis.call("XADD", KEYS[1], "*", unpack(fields))
redis.call("XACK", KEYS[1], ARGV[1], ARGV[2])
return new_id
