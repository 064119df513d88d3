"""Server-side scripts for changes that must be atomic per entry."""

from __future__ import annotations

from redis.commands.core import Script

from streams_admin.redis import client

# KEYS: stream. ARGV: group, id, then extra field/value pairs.
# Copies a still-pending entry to the stream's end and acks the original, in one step:
# 0 when it is no longer pending (acked or claimed meanwhile), -1 when its data is gone.
REQUEUE = """
local pending = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then return 0 end
local found = redis.call("XRANGE", KEYS[1], ARGV[2], ARGV[2])
if #found == 0 then return -1 end
local fields, count = {}, 1
for i = 1, #found[1][2], 2 do
  local name = found[1][2][i]
  if name == "requeued_from" then
  elseif name == "requeue_count" then count = (tonumber(found[1][2][i + 1]) or 0) + 1
  else
    fields[#fields + 1] = name
    fields[#fields + 1] = found[1][2][i + 1]
  end
end
fields[#fields + 1] = "requeued_from"; fields[#fields + 1] = ARGV[2]
fields[#fields + 1] = "requeue_count"; fields[#fields + 1] = tostring(count)
local new_id = redis.call("XADD", KEYS[1], "*", unpack(fields))
redis.call("XACK", KEYS[1], ARGV[1], ARGV[2])
return new_id
"""

# KEYS: stream, dead-letter stream. ARGV: group, id, then metadata field/value pairs.
# Moves a still-pending entry (its fields, the metadata, its delivery count and consumer) to
# the dead-letter stream and acks it, in one step. Same 0 / -1 answers as REQUEUE.
DEAD_LETTER = """
local pending = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then return 0 end
local found = redis.call("XRANGE", KEYS[1], ARGV[2], ARGV[2])
if #found == 0 then return -1 end
local fields = found[1][2]
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = "delivery_count"; fields[#fields + 1] = tostring(pending[1][4])
fields[#fields + 1] = "consumer"; fields[#fields + 1] = pending[1][2]
local new_id = redis.call("XADD", KEYS[2], "*", unpack(fields))
redis.call("XACK", KEYS[1], ARGV[1], ARGV[2])
return new_id
"""

# KEYS: dead-letter stream, original stream. ARGV: dead-letter entry id, then the names of
# the metadata fields to leave out. Puts the original fields back and deletes the dead
# letter, in one step: 0 when the dead letter is gone (re-driven meanwhile).
REDRIVE = """
local found = redis.call("XRANGE", KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return 0 end
local skip = {}
for i = 2, #ARGV do skip[ARGV[i]] = true end
local fields = {}
for i = 1, #found[1][2], 2 do
  if not skip[found[1][2][i]] then
    fields[#fields + 1] = found[1][2][i]
    fields[#fields + 1] = found[1][2][i + 1]
  end
end
if #fields == 0 then fields = {"data", "null"} end
local new_id = redis.call("XADD", KEYS[2], "*", unpack(fields))
redis.call("XDEL", KEYS[1], ARGV[1])
return new_id
"""

# KEYS: stream. ARGV: start (inclusive), end (inclusive), limit. Counts entries in a range,
# 1000 at a time, stopping at limit: {count, reached_limit}.
COUNT_RANGE = """
local count, start, limit = 0, ARGV[1], tonumber(ARGV[3])
while count < limit do
  local batch = redis.call("XRANGE", KEYS[1], start, ARGV[2], "COUNT", 1000)
  count = count + #batch
  if #batch < 1000 then return {count, 0} end
  start = "(" .. batch[#batch][1]
end
return {count, 1}
"""

# KEYS: stream. ARGV: offset (>= 1). The ID of the offset-th entry from the start, or false.
ID_AT = """
local left, start = tonumber(ARGV[1]), "-"
while left > 0 do
  local take = math.min(left, 1000)
  local batch = redis.call("XRANGE", KEYS[1], start, "+", "COUNT", take)
  if #batch < take then return false end
  left = left - take
  if left == 0 then return batch[#batch][1] end
  start = "(" .. batch[#batch][1]
end
return false
"""

# KEYS: stream. ARGV: group, end ID (inclusive), limit. Counts pending entries up to end.
COUNT_PENDING = """
local count, start, limit = 0, "-", tonumber(ARGV[3])
while count < limit do
  local batch = redis.call("XPENDING", KEYS[1], ARGV[1], start, ARGV[2], 1000)
  count = count + #batch
  if #batch < 1000 then return {count, 0} end
  start = "(" .. batch[#batch][1]
end
return {count, 1}
"""


def script(source: str) -> Script:
    return client().register_script(source)
