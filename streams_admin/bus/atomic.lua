-- KEYS: every key the commands touch (declared, so the cluster routes the call by slot).
-- ARGV: commands, each prefixed by its length: 4, XADD, key, *, ..., 3, XACK, key, group, id.
-- Reply: each command's reply in order ("OK" for a status). Stops at the first error, so an
-- XACK after a failed write never runs.
local out, i, n = {}, 1, 0
while i <= #ARGV do
  local argc = tonumber(ARGV[i])
  local r = redis.call(unpack(ARGV, i + 1, i + argc))
  if type(r) == 'table' and r.ok then r = r.ok end
  n = n + 1
  out[n] = r or false
  i = i + argc + 1
end
return out
