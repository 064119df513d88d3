-- KEYS: streams (a standalone server); on a cluster none: the streams come after ARGV[4],
-- keys of many slots of this node (run with allow-cross-slot-keys).
-- ARGV[1]: "1" for every consumer's row; "0" for only the rows of stalled consumers (idle
-- past ARGV[2] ms in a group with an entry not yet delivered). ARGV[3]: the most consumers
-- a group may have for XINFO CONSUMERS to be read (it has no COUNT). ARGV[4]: the most
-- entries counted when Redis gives no lag.
-- Reply: {{seconds, microseconds} of this server's TIME, then for each key: {length,
-- last-generated-id, entries-added or false, first entry ID or false, groups} or false (the
-- key is gone or not a stream) or "moved" (a cluster node that does not hold it)}. A group:
-- {name, consumers, pending, last-delivered-id, entries-read or false, lag or false, first
-- undelivered ID or false, lag counted or false, {oldest pending ID, its idle ms} or false,
-- {{consumer, pending, idle, inactive or false}, ...}}. Read-only.
local all_consumers = ARGV[1] == "1"
local threshold = tonumber(ARGV[2])
local max_consumers = tonumber(ARGV[3])
local count_limit = ARGV[4]
local keys = KEYS
if #KEYS == 0 then
  keys = {}
  for i = 5, #ARGV do keys[i - 4] = ARGV[i] end
end
local function gone(err)
  local text = type(err) == "table" and err.err or tostring(err)
  return string.find(text, "WRONGTYPE", 1, true) or string.find(text, "no such key", 1, true)
end
local function fields(flat)
  local f = {}
  for k = 1, #flat, 2 do f[flat[k]] = flat[k + 1] end
  return f
end
local function consumers(key, g, undelivered)
  local rows = {}
  if g["consumers"] == 0 or g["consumers"] > max_consumers then return rows end
  if not all_consumers and not undelivered then return rows end
  for _, flat in ipairs(redis.call("XINFO", "CONSUMERS", key, g["name"])) do
    local c = fields(flat)
    if all_consumers or c["idle"] > threshold then
      rows[#rows + 1] = {c["name"], c["pending"], c["idle"], c["inactive"] or false}
    end
  end
  return rows
end
local function after(key, id, count)
  -- A group set to the largest ID has nothing after it: "(" of it is an error, not a range.
  local ok, rest = pcall(redis.call, "XRANGE", key, "(" .. id, "+", "COUNT", count)
  if ok then return rest else return {} end
end
local function group(key, g)
  local counted = false
  local first = false
  if g["lag"] then
    local next_one = after(key, g["last-delivered-id"], 1)
    if next_one[1] then first = next_one[1][1] end
  else -- no lag from Redis: counted here, up to the limit, as the pages do
    local rest = after(key, g["last-delivered-id"], count_limit)
    counted = #rest
    if rest[1] then first = rest[1][1] end
  end
  local oldest = false
  if g["pending"] > 0 then
    local row = redis.call("XPENDING", key, g["name"], "-", "+", 1)[1]
    if row then oldest = {row[1], row[3]} end
  end
  return {g["name"], g["consumers"], g["pending"], g["last-delivered-id"],
          g["entries-read"] or false, g["lag"] or false, first, counted, oldest,
          consumers(key, g, first ~= false)}
end
local time = redis.call("TIME")
local out = {{tonumber(time[1]), tonumber(time[2])}}
for i, key in ipairs(keys) do
  local ok, info = pcall(redis.call, "XINFO", "STREAM", key)
  if not ok then
    if gone(info) then out[i + 1] = false else out[i + 1] = "moved" end
  else
    local s = fields(info)
    local first = false
    if s["first-entry"] then first = s["first-entry"][1] end
    local groups = {}
    for j, flat in ipairs(redis.call("XINFO", "GROUPS", key)) do
      groups[j] = group(key, fields(flat))
    end
    out[i + 1] = {s["length"], s["last-generated-id"], s["entries-added"] or false, first,
                  groups}
  end
end
return out
