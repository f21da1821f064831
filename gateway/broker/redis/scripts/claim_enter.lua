-- A new connection's name claimed and its first room entered in one step, on one Redis
-- (the keys span slots: never on a cluster). `claim` is CLAIM_NAME or CLAIM_SHARED and
-- `enter` PRESENCE_ADD, each as a function of its own KEYS and ARGV.
-- KEYS: the claim's two (the name's hash, the node's names index), then PRESENCE_ADD's
-- six (members, refs, shown, holders, the ban key, the room's meta). ARGV: the claim's
-- nine, then PRESENCE_ADD's seven ('read'); events: the join's event JSON after them.
-- Returns {the claim's answer} when it did not claim the name ('taken', or 'owner':
-- nothing entered, see CLAIM_NAME), else {the claim's answer, PRESENCE_ADD's}.
local claimed = claim({KEYS[1], KEYS[2]}, {unpack(ARGV, 1, 9)})
if claimed[1] == 'taken' or claimed[1] == 'owner' then return {claimed} end
return {claimed, enter({unpack(KEYS, 3, 8)}, {unpack(ARGV, 10, #ARGV)})}
