-- KEYS[1]: the target stream. ARGV[1]: how many of its newest entries to look at;
-- ARGV[2..5]: two marker field/value pairs; then the field/value pairs of the copy.
-- The first step of a move between streams in different cluster slots (moves.py): adds the
-- copy unless one of the newest entries already carries both markers (a retry's own copy).
-- Reply: {the copy's ID, 1 when added now or 0 when found}.
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
