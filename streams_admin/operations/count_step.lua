-- KEYS[1]: a stream. ARGV[1]: XRANGE, XREVRANGE or XPENDING; ARGV[2], ARGV[3]: from and to
-- (range bounds, in the command's order); ARGV[4]: most entries; ARGV[5]: most microseconds;
-- ARGV[6]: the group (XPENDING only).
-- Counts entries (or a group's pending entries) from `from` towards `to`, 100 at a time, and
-- stops at `most` entries or once the call has run `micros`: one call never holds Redis long,
-- however long the stream or big its entries. Read-only: TIME is allowed.
-- Reply: {count, the last ID seen or false, 1 when the range ended else 0}.
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
