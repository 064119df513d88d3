-- KEYS: streams (a standalone server); on a cluster none: the streams come after ARGV[1],
-- keys of many slots of this node (run with allow-cross-slot-keys).
-- ARGV[1]: "1" to read each stream's last-generated-id too, else "0".
-- Reply, for each key: {length, last-generated-id or false, {{name, consumers, pending,
-- last-delivered-id, entries-read or false, lag or false, undelivered}, ...}, first entry ID or
-- false (only asked when there are groups: their lag needs it)}. undelivered, only when Redis
-- gives no lag (6.2, deletions past the group): 1 when an entry comes after the group's
-- last-delivered ID, else 0 (a stalled consumer needs to know); false when the lag tells.
-- A key's reply is false when it is gone or no longer a stream; "moved" on a cluster when
-- this node does not hold it (any more: a resharding), to be asked elsewhere. Read-only;
-- one reply instead of two per stream.
local with_last = ARGV[1] == "1"
local keys = KEYS
if #KEYS == 0 then
  keys = {}
  for i = 2, #ARGV do keys[i - 1] = ARGV[i] end
end
local function gone(err)
  local text = type(err) == "table" and err.err or tostring(err)
  return string.find(text, "WRONGTYPE", 1, true) or string.find(text, "no such key", 1, true)
end
local out = {}
for i, key in ipairs(keys) do
  local ok, length = pcall(redis.call, "XLEN", key)
  local okg, groups = pcall(redis.call, "XINFO", "GROUPS", key)
  if not ok or not okg then
    if gone(ok and groups or length) then out[i] = false else out[i] = "moved" end
  else
    local last = false
    if with_last then
      local info = redis.call("XINFO", "STREAM", key)
      for k = 1, #info, 2 do
        if info[k] == "last-generated-id" then last = info[k + 1] end
      end
    end
    local rows = {}
    for j, group in ipairs(groups) do
      local f = {}
      for k = 1, #group, 2 do f[group[k]] = group[k + 1] end
      local undelivered = false
      if not f["lag"] then
        local after = redis.call("XRANGE", key, "(" .. f["last-delivered-id"], "+", "COUNT", 1)
        undelivered = #after
      end
      rows[j] = {f["name"], f["consumers"], f["pending"], f["last-delivered-id"],
                 f["entries-read"] or false, f["lag"] or false, undelivered}
    end
    local first = false
    if #rows > 0 and length > 0 then
      first = redis.call("XRANGE", key, "-", "+", "COUNT", 1)[1][1]
    end
    out[i] = {length, last, rows, first}
  end
end
return out
