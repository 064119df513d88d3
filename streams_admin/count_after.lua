-- KEYS[1]: a stream. ARGV[1]: an entry ID; ARGV[2]: the most entries to count.
-- Reply: how many entries come after that ID (exclusive), up to ARGV[2]: a group's lag when
-- Redis cannot give it, counted inside Redis so no entry leaves it.
return #redis.call("XRANGE", KEYS[1], "(" .. ARGV[1], "+", "COUNT", ARGV[2])
