-- KEYS[1]: a dead-letter stream; KEYS[2]: the original stream. ARGV[1]: the dead letter's
-- ID; then the names of the metadata fields to leave out.
-- Puts the original fields back on the original stream and deletes the dead letter, in one
-- step. Reply: the new entry's ID; 0 when the dead letter is gone (re-driven meanwhile).
-- The wire's field names are filled in by scripts.py (string.Template placeholders).
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
