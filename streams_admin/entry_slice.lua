-- One entry, bounded: what the entry page shows of it, cut inside Redis so that a huge entry
-- never crosses the wire whole. KEYS: stream. ARGV: entry ID, first field (0-based), most
-- fields, bytes in all, bytes of any one name or value.
-- Returns false (no such entry) or {field count, bytes in all, {name, its length, value,
-- its length, ...}} with each name and value cut to what the budget leaves.
local found = redis.call("XRANGE", KEYS[1], ARGV[1], ARGV[1], "COUNT", 1)[1]
if not found then return false end
local flat = found[2]
local most, budget, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local total = 0
for i = 1, #flat do total = total + #flat[i] end
local out = {}
local i = tonumber(ARGV[2]) * 2 + 1
while i < #flat and #out < most * 4 and budget > 0 do
  for j = i, i + 1 do
    local s = flat[j]
    local n = math.min(#s, cap, budget)
    out[#out + 1] = string.sub(s, 1, n)
    out[#out + 1] = #s
    budget = budget - n
  end
  i = i + 2
end
return {#flat / 2, total, out}
