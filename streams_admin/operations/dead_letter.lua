-- KEYS[1]: a stream; KEYS[2]: its dead-letter stream. ARGV[1]: a group; ARGV[2]: an entry ID;
-- then the metadata's field/value pairs.
-- Moves the still-pending entry (its fields, the metadata, its delivery count and consumer)
-- to the dead-letter stream and acks it, in one step.
-- Reply: the dead letter's ID; 0 when no longer pending, -1 when its data is gone.
-- The wire's field names are filled in by scripts.py (string.Template placeholders).
local pending = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then return 0 end
local found = redis.call("XRANGE", KEYS[1], ARGV[2], ARGV[2])
if #found == 0 then return -1 end
local fields = found[1][2]
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = "$delivery_count"; fields[#fields + 1] = tostring(pending[1][4])
fields[#fields + 1] = "$consumer"; fields[#fields + 1] = pending[1][2]
local new_id = redis.call("XADD", KEYS[2], "*", unpack(fields))
redis.call("XACK", KEYS[1], ARGV[1], ARGV[2])
return new_id
