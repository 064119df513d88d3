"""Server-side scripts for changes that must be atomic per entry."""

from __future__ import annotations

from string import Template

from redis.commands.core import Script

from streams_admin.bus import wire
from streams_admin.redis import client

# The wire names the scripts write, substituted into their source as $names (Lua has no $).
NAMES = {wire.name(n): wire.name(n) for n in (
    wire.REQUEUED_FROM, wire.REQUEUE_COUNT, wire.DELIVERY_COUNT, wire.CONSUMER, wire.DATA)}

# KEYS: stream. ARGV: group, id, then extra field/value pairs.
# Copies a still-pending entry to the stream's end and acks the original, in one step:
# 0 when it is no longer pending (acked or claimed meanwhile), -1 when its data is gone.
REQUEUE = Template("""
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
""").substitute(NAMES)

# KEYS: stream, dead-letter stream. ARGV: group, id, then metadata field/value pairs.
# Moves a still-pending entry (its fields, the metadata, its delivery count and consumer) to
# the dead-letter stream and acks it, in one step. Same 0 / -1 answers as REQUEUE.
DEAD_LETTER = Template("""
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
""").substitute(NAMES)

# KEYS: dead-letter stream, original stream. ARGV: dead-letter entry id, then the names of
# the metadata fields to leave out. Puts the original fields back and deletes the dead
# letter, in one step: 0 when the dead letter is gone (re-driven meanwhile).
REDRIVE = Template("""
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
if #fields == 0 then fields = {"$data", "null"} end
local new_id = redis.call("XADD", KEYS[2], "*", unpack(fields))
redis.call("XDEL", KEYS[1], ARGV[1])
return new_id
""").substitute(NAMES)

# KEYS: target stream. ARGV: how many of its newest entries to look at, two marker
# field/value pairs, then the field/value pairs of the copy. The first step of a move
# between streams in different cluster slots (moves.py): adds the copy unless one of the
# newest entries already carries both markers (a retry's own copy). {ID, 1 when added}.
COPY_ONCE = """
local newest = redis.call("XREVRANGE", KEYS[1], "+", "-", "COUNT", tonumber(ARGV[1]))
for _, entry in ipairs(newest) do
  local a, b = false, false
  for i = 1, #entry[2], 2 do
    if entry[2][i] == ARGV[2] and entry[2][i + 1] == ARGV[3] then a = true end
    if entry[2][i] == ARGV[4] and entry[2][i + 1] == ARGV[5] then b = true end
  end
  if a and b then return {entry[1], 0} end
end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
return {redis.call("XADD", KEYS[1], "*", unpack(fields)), 1}
"""

# KEYS: stream. ARGV: command (XRANGE, XREVRANGE or XPENDING), from, to (Redis range bounds,
# in the command's order), most entries, most microseconds, group (XPENDING only).
# Counts entries (or a group's pending entries) from `from` towards `to`, 100 at a time, and
# stops at `most` entries or once the call has run `micros`: one call never holds Redis long,
# however long the stream or big its entries. {count, last ID seen or false, 1 when the range
# ended}. Read-only: TIME is allowed.
COUNT_STEP = """
local command, from, to = ARGV[1], ARGV[2], ARGV[3]
local most, micros = tonumber(ARGV[4]), tonumber(ARGV[5])
-- Redis 8 and Valkey 8 freeze TIME for a whole script (7.0 does not) but give os.clock,
-- the server's CPU time, which moves while the script runs; 6.2 and 7.0 have no os.
local clock = nil
pcall(function() clock = os.clock end)
local function now()
  if clock then return clock() * 1000000 end
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local started, count, last = now(), 0, false
while count < most do
  local want = math.min(100, most - count)
  local batch
  if command == "XPENDING" then
    batch = redis.call("XPENDING", KEYS[1], ARGV[6], from, to, want)
  else
    batch = redis.call(command, KEYS[1], from, to, "COUNT", want)
  end
  count = count + #batch
  if #batch > 0 then last = batch[#batch][1] end
  if #batch < want then return {count, last, 1} end
  from = "(" .. last
  if now() - started > micros then break end
end
return {count, last, 0}
"""


def script(source: str) -> Script:
    return client().register_script(source)
