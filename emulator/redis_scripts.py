"""The Lua scripts of ``RedisStore``: each is one atomic step in Redis (nothing runs between
its commands), which is how counts, budgets and balances stay exact across workers.

Comments give each script's KEYS and ARGV and what it returns.
"""

# KEYS task, order, seq, ends; ARGV json, id, polls, end -> 1 inserted, 0 id taken
INSERT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'p', ARGV[3])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
return 1
"""
# KEYS task; ARGV owner ('' for any) -> {json, polls} after counting one poll, or nil (missing,
# or another owner's: their polls must not move it)
COUNT_POLL = """
local d = redis.call('HGET', KEYS[1], 'd')
if not d then return false end
if ARGV[1] ~= '' and cjson.decode(d)['owner'] ~= ARGV[1] then return false end
local p = redis.call('HINCRBY', KEYS[1], 'p', 1)
return {d, p}
"""
# KEYS task, ends; ARGV json, polls, id, end -> 1 replaced, 0 missing
REPLACE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'p', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
return 1
"""
# KEYS order; ARGV key prefix, fields... -> flat list of the fields of every member, in order
LIST = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local row = redis.call('HMGET', ARGV[1] .. id, unpack(ARGV, 2))
  if row[1] then for _, v in ipairs(row) do out[#out + 1] = v end end
end
return out
"""
# KEYS clock; ARGV seconds -> new time. Lua numbers are doubles like Python floats, and %.17g
# prints them exactly, so the shared clock adds up exactly like the in-memory one.
ADVANCE = """
local v = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
local s = string.format('%.17g', v)
redis.call('SET', KEYS[1], s)
return s
"""
# KEYS faults, order, evals, hits, seq; ARGV id, json
ADD_FAULT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], 0)
redis.call('HSET', KEYS[4], ARGV[1], 0)
"""
# KEYS faults, order -> rule JSONs in order
LIST_FAULTS = """
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(ids))
"""
# KEYS hits; ARGV id, times ('' = unlimited) -> 1 taken, 0 spent
CLAIM = """
local hits = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if ARGV[2] ~= '' and hits >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""
# KEYS journal, seq; ARGV json, limit -> the entry's sequence number
JOURNAL = """
local seq = redis.call('INCR', KEYS[2])
local limit = tonumber(ARGV[2])
if limit <= 0 then redis.call('DEL', KEYS[1]) return seq end
redis.call('RPUSH', KEYS[1], seq .. '\\n' .. ARGV[1])
redis.call('LTRIM', KEYS[1], -limit, -1)
return seq
"""
# KEYS balances, charge, order, seq; ARGV owner, held, json, id -> 1 held, 0 not enough balance
HOLD = """
local balance = redis.call('HGET', KEYS[1], ARGV[1])
if balance then
  if tonumber(balance) < tonumber(ARGV[2]) then return 0 end
  redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'd', ARGV[3], 'owner', ARGV[1], 'held', ARGV[2],
           'state', 'held', 'images', 0, 'amount', 0, 'settled_at', '')
redis.call('ZADD', KEYS[3], 'NX', redis.call('INCR', KEYS[4]), ARGV[4])
return 1
"""
# KEYS charge, balances; ARGV state, images, amount, settled_at -> 1 settled, 0 not held
SETTLE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'held' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'images', ARGV[2], 'amount', ARGV[3],
           'settled_at', ARGV[4])
local owner = redis.call('HGET', KEYS[1], 'owner')
if redis.call('HEXISTS', KEYS[2], owner) == 1 then
  local back = tonumber(redis.call('HGET', KEYS[1], 'held')) - tonumber(ARGV[3])
  redis.call('HINCRBY', KEYS[2], owner, back)
end
return 1
"""

# KEYS task, faults, order, clock, charge; ARGV mode ('get', 'count' or 'none'), owner ('' any)
# -> {task json, polls, clock, charge state, rule JSONs...}: what one request reads, at once
SNAPSHOT = """
local task, polls = false, false
if ARGV[1] == 'count' then
  local d = redis.call('HGET', KEYS[1], 'd')
  if d and (ARGV[2] == '' or cjson.decode(d)['owner'] == ARGV[2]) then
    polls = redis.call('HINCRBY', KEYS[1], 'p', 1)
    task = d
  end
elseif ARGV[1] == 'get' then
  local row = redis.call('HMGET', KEYS[1], 'd', 'p')
  task, polls = row[1], row[2]
end
local state = false
if ARGV[1] ~= 'none' then state = redis.call('HGET', KEYS[5], 'state') end
local out = {task, polls, redis.call('GET', KEYS[4]), state}
local ids = redis.call('ZRANGE', KEYS[3], 0, -1)
if #ids > 0 then
  for _, rule in ipairs(redis.call('HMGET', KEYS[2], unpack(ids))) do out[#out + 1] = rule end
end
return out
"""
# KEYS task, tasks, task seq, balances, charge, charges, charge seq, blob, ends
# ARGV task json, id, polls, owner, held, charge json, blob, blob ttl (0: none), has blob, end
# -> 1 placed, 0 id taken, 2 refused (balance): a submission's writes in one step
INSERT_HELD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local balance = redis.call('HGET', KEYS[4], ARGV[4])
if balance then
  if tonumber(balance) < tonumber(ARGV[5]) then return 2 end
  redis.call('HINCRBY', KEYS[4], ARGV[4], -tonumber(ARGV[5]))
end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'p', ARGV[3])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[2])
redis.call('ZADD', KEYS[9], ARGV[10], ARGV[2])
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[5], 'd', ARGV[6], 'owner', ARGV[4], 'held', ARGV[5],
           'state', 'held', 'images', 0, 'amount', 0, 'settled_at', '')
redis.call('ZADD', KEYS[6], 'NX', redis.call('INCR', KEYS[7]), ARGV[2])
if ARGV[9] == '1' then
  if ARGV[8] == '0' then redis.call('SET', KEYS[8], ARGV[7])
  else redis.call('SET', KEYS[8], ARGV[7], 'EX', ARGV[8]) end
end
return 1
"""
# KEYS ends, tasks; ARGV task key prefix, blob key prefix, finished before, now, keep ('': no cap)
# -> {tasks left, json, polls, ...} of the removed: expiry by the end-time index, not a full read
EXPIRE = """
local doomed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local total = redis.call('ZCARD', KEYS[2])
if ARGV[5] ~= '' then
  local excess = total - #doomed - tonumber(ARGV[5])
  if excess > 0 then
    local ended = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[3], ARGV[4], 'LIMIT', 0, excess)
    for _, id in ipairs(ended) do doomed[#doomed + 1] = id end
  end
end
local out = {total}
for _, id in ipairs(doomed) do
  local row = redis.call('HMGET', ARGV[1] .. id, 'd', 'p')
  if row[1] then
    out[#out + 1] = row[1]
    out[#out + 1] = row[2]
    redis.call('DEL', ARGV[1] .. id, ARGV[2] .. id)
    redis.call('ZREM', KEYS[2], id)
    out[1] = out[1] - 1
  end
  redis.call('ZREM', KEYS[1], id)
end
return out
"""
