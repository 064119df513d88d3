-- KEYS[1]: a stream. ARGV: entry IDs.
-- Reply: for each ID, 1 when its entry is still there, else 0: a page of pending entries
-- learns which lost their data in one command and a few bytes, whatever the entries hold.
local out = {}
for i, id in ipairs(ARGV) do out[i] = #redis.call("XRANGE", KEYS[1], id, id, "COUNT", 1) end
return out
