-- KEYS[1]: the stream. ARGV[1]: an ID nothing at or after which goes, or "" for no limit.
-- Reply: how many entries XTRIM MINID removed (0: no such stream, or no group).
-- Atomic, so no group can be created or read from between finding the floor and trimming.
-- The floor is the lowest of: each group's oldest pending entry, and the entry after each
-- group's last-delivered ID (nothing from there on was delivered to that group yet).
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function lower(a, b)
  if a == nil then return b end
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  if bms < ams or (bms == ams and bseq < aseq) then return b end
  return a
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local floor = nil
if ARGV[1] ~= '' then floor = ARGV[1] end
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local ms, seq = parse(info['last-delivered-id'])
  floor = lower(floor, string.format('%.0f-%.0f', ms, seq + 1))
  if info['pending'] > 0 then
    floor = lower(floor, redis.call('XPENDING', KEYS[1], info['name'])[2])
  end
end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
