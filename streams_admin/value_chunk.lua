-- Part of one field's value, for a download that streams: Redis has no range read of a
-- stream entry, so each chunk re-reads the entry here and only the chunk crosses the wire.
-- KEYS: stream. ARGV: entry ID, field position (0-based), offset, length.
-- Returns false (no such entry or field) or {the value's length, the chunk}.
local found = redis.call("XRANGE", KEYS[1], ARGV[1], ARGV[1], "COUNT", 1)[1]
if not found then return false end
local value = found[2][tonumber(ARGV[2]) * 2 + 2]
if not value then return false end
local offset = tonumber(ARGV[3])
return {#value, string.sub(value, offset + 1, offset + tonumber(ARGV[4]))}
