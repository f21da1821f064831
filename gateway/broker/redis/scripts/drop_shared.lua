-- Shared by RELEASE_NAME and REAP_NAME: drop a shared name's connections for which
-- `gone(conn, node)` holds; the name is deleted once none is left. Returns whether
-- one of `node`'s connections is still there.
local function drop_shared(name, gone, node)
  local fields = redis.call('HGETALL', name)
  local left, mine = 0, false
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == 'c:' then
      if gone(string.sub(fields[i], 3), fields[i + 1]) then
        redis.call('HDEL', name, fields[i])
      else
        left = left + 1
        if fields[i + 1] == node then mine = true end
      end
    end
  end
  if left == 0 then redis.call('DEL', name) end
  return mine
end
