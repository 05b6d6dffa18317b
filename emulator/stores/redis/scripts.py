"""The Lua scripts of ``RedisStore``: each is one atomic step in Redis (nothing runs between
its commands), which is how counts, the cap, holds and balances stay exact across workers.

Every script starts with ``PRELUDE`` and takes the same first four arguments:
ARGV[1] key prefix ("<store_prefix>:"), ARGV[2] deadline ('' for a read), ARGV[3] clock time
('' for the manual clock kept under P:clock), ARGV[4] finished charges the usage log keeps
('' for all); its own arguments follow from ARGV[5]. Keys are built from the prefix (which is
why Redis Cluster is not supported).

A write's deadline is in Redis's own ``TIME``: a script that starts later than that (Redis
stalled, the caller has timed out and answered 503) does nothing and answers ``LATE``. So a
write the caller was told failed never happens afterwards, and no write is ever sent twice.

Keys (P = prefix):
  P:task:<id>     hash, a task                 P:tasks         zset id by submission order
  P:ends          zset id by end time (only tasks whose end is known: expiry and the cap)
  P:charge:<id>   hash, its charge             P:charges       zset id by hold order
  P:held          zset id of held charges by when they fall due (+inf until known)
  P:done          zset id of finished charges by settlement order (the bounded log)
  P:usage:<sum>   hash owner\\nkey\\nmodel\\nstate -> that sum of every charge (listed or
                  trimmed from the log): the totals (``usage``)
  P:balances / P:balances:labels   hash owner -> amount / masked key
  P:clock         manual clock, "%.17g" text   P:blob:<key>    bytes (ref:<id> with its task)
  P:clock_mode    the clock mode the prefix is kept with (``claim_clock``; kept by reset)
  P:faults        hash id -> rule JSON         P:faults:order  zset id by insertion order
  P:faults:evals / P:faults:hits  hash id -> count     P:journal  list of "<seq>\\n<JSON>"
  (the fault rules' scripts are in faults.py, with the store's methods that send them)
  P:seq:*         counters                     P:streams  id streams handed out (kept by reset)
  (P:seq:task numbers the tasks, their scores in P:tasks, and P:seq:charge the charges, their
  scores in P:charges; P:epoch and P:charges:epoch name those numberings, each made by the
  first PAGE of its listing when missing: all kept by reset, so a listing's cursor from before
  a reset goes on after its number; a wiped Redis starts them again, and refuses old cursors)
  (P:journal:epoch names the journal's numbering, P:seq:journal numbers it, and
  P:journal:cleared holds its value at the last clear: journal.py, with the journal's scripts)

Task hash P:task:<id>: d task JSON as submitted, p polls, o owner, c created_at, s ends_at,
k end poll (per_poll only), e end time once known, i images paid when it has ended,
f the schedule JSON of a forced outcome. Charge hash P:charge:<id>: d charge JSON as held,
owner, key, model, held, unit, taken, state, images, amount, refunded, settled_at.
"""

from . import usage

_HEAD = """
local P = ARGV[1]
local LIMIT = tonumber(ARGV[4])
local function late()
  if ARGV[2] == '' then return false end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000 > tonumber(ARGV[2])
end
local function clock_text()
  if ARGV[3] ~= '' then return ARGV[3] end
  return redis.call('GET', P .. 'clock') or '0'
end
local function ended(id, now)
  local row = redis.call('HMGET', P .. 'task:' .. id, 'c', 's', 'k', 'p')
  if not row[1] then return false end
  if row[3] then return tonumber(row[4]) >= tonumber(row[3]) end
  return now - tonumber(row[1]) >= tonumber(row[2])
end
"""
_REST = """
local function trim()
  if not LIMIT then return end
  local over = redis.call('ZCARD', P .. 'done') - LIMIT
  if over <= 0 then return end
  -- A trimmed charge's sums stay in P:usage:* (it still counts): only the charge goes.
  for _, id in ipairs(redis.call('ZRANGE', P .. 'done', 0, over - 1)) do
    redis.call('DEL', P .. 'charge:' .. id)
    redis.call('ZREM', P .. 'charges', id)
  end
  redis.call('ZREMRANGEBYRANK', P .. 'done', 0, over - 1)
end
local function settle(id, images, at)
  local ck = P .. 'charge:' .. id
  local c = redis.call('HMGET', ck, 'state', 'owner', 'held', 'taken', 'unit', 'key', 'model')
  if c[1] ~= 'held' then return 0 end
  usage_ready()
  local held, taken = tonumber(c[3]), tonumber(c[4])
  local amount = math.min(held, tonumber(c[5]) * images)
  local back = taken - math.min(taken, amount)
  local refunded = 0
  if back > 0 and redis.call('HEXISTS', P .. 'balances', c[2]) == 1 then
    redis.call('HINCRBY', P .. 'balances', c[2], back)
    refunded = back
  end
  local state = 'released'
  if images > 0 then state = 'settled' end
  usage_add(c[2], c[6], c[7], 'held', {1, 0, 0, taken, 0, held}, -1)
  usage_add(c[2], c[6], c[7], state, {1, images, amount, taken, refunded, 0}, 1)
  redis.call('HSET', ck, 'state', state, 'images', images, 'amount', amount,
             'refunded', refunded, 'settled_at', at)
  redis.call('ZREM', P .. 'held', id)
  redis.call('ZADD', P .. 'done', redis.call('INCR', P .. 'seq:done'), id)
  trim()
  return 1
end
local function remove_if_ended(id, now)
  if not ended(id, now) then return 0 end
  local tk = P .. 'task:' .. id
  local t = redis.call('HMGET', tk, 'i', 'e')
  redis.call('DEL', tk, P .. 'blob:ref:' .. id)
  redis.call('ZREM', P .. 'tasks', id)
  redis.call('ZREM', P .. 'ends', id)
  settle(id, tonumber(t[1]), t[2])
  return 1
end
local function settle_due(now)
  local n = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'held', '-inf', now)) do
    if ended(id, now) then
      local t = redis.call('HMGET', P .. 'task:' .. id, 'i', 'e')
      n = n + settle(id, tonumber(t[1]), t[2])
    end
  end
  return n
end
"""
#: What every script starts with (the module's doc): its arguments, and the steps they share.
PRELUDE = _HEAD + usage.FUNCTIONS + _REST

#: What a write script runs first: nothing at all once its deadline has passed.
LATE = "if late() then return redis.error_reply('LATE the caller has given up') end\n"
#: After ``LATE`` in every script that may move the usage sums (a hold, a settlement, an
#: eviction or expiry settling): an older prefix's sums built first, and the deadline checked
#: again after that build, before the script writes anything else (``usage.FUNCTIONS``).
_BUILT = (
    "if usage_ready() and late() then "
    "return redis.error_reply('LATE the caller has given up') end\n"
)

# ARGV id, task json, owner, created_at, ends_at, end poll (''), end (''), images paid,
# charge json, held, unit price, key label, model, blob, has blob ('1'), cap (0: none), the
# most tasks one step evicts (an argument, not text: one script, one SHA, for every bound)
# -> 1 placed, 0 id taken, 2 refused (balance), 3 full (cap: nothing ended, or more ended
# ones to shed than one step evicts)
INSERT_HELD = (
    PRELUDE
    + LATE
    + _BUILT
    + """
local id = ARGV[5]
local tk = P .. 'task:' .. id
if redis.call('EXISTS', tk) == 1 then return 0 end
local now = tonumber(clock_text())
local cap = tonumber(ARGV[20])
if cap > 0 and redis.call('ZCARD', P .. 'tasks') >= cap then
  local bound = tonumber(ARGV[21])
  local excess = math.min(redis.call('ZCARD', P .. 'tasks')
    - (cap - math.max(1, math.min(math.floor(cap / 10), bound))), bound)
  local removed = 0
  for _, victim in ipairs(redis.call('ZRANGEBYSCORE', P .. 'ends', '-inf', now,
                                     'LIMIT', 0, excess + 16)) do
    if removed < excess then removed = removed + remove_if_ended(victim, now) end
  end
  if redis.call('ZCARD', P .. 'tasks') >= cap then return 3 end
end
local owner, held = ARGV[7], tonumber(ARGV[14])
local balance = redis.call('HGET', P .. 'balances', owner)
if balance and tonumber(balance) < held then
  settle_due(now)
  balance = redis.call('HGET', P .. 'balances', owner)
  if balance and tonumber(balance) < held then return 2 end
end
local taken = 0
if balance then
  redis.call('HINCRBY', P .. 'balances', owner, -held)
  taken = held
end
redis.call('HSET', tk, 'd', ARGV[6], 'p', 0, 'o', owner, 'c', ARGV[8], 's', ARGV[9],
           'i', ARGV[12])
if ARGV[10] ~= '' then redis.call('HSET', tk, 'k', ARGV[10]) end
local due = '+inf'
if ARGV[11] ~= '' then
  redis.call('HSET', tk, 'e', ARGV[11])
  redis.call('ZADD', P .. 'ends', ARGV[11], id)
  due = ARGV[11]
end
redis.call('ZADD', P .. 'tasks', redis.call('INCR', P .. 'seq:task'), id)
local ck = P .. 'charge:' .. id
redis.call('DEL', ck)
redis.call('HSET', ck, 'd', ARGV[13], 'owner', owner, 'key', ARGV[16], 'model', ARGV[17],
           'held', held, 'unit', ARGV[15], 'taken', taken, 'state', 'held', 'images', 0,
           'amount', 0, 'refunded', 0, 'settled_at', '')
redis.call('ZADD', P .. 'charges', redis.call('INCR', P .. 'seq:charge'), id)
usage_add(owner, ARGV[16], ARGV[17], 'held', {1, 0, 0, taken, 0, held}, 1)
redis.call('ZADD', P .. 'held', due, id)
if ARGV[19] == '1' then redis.call('SET', P .. 'blob:ref:' .. id, ARGV[18]) end
return 1
"""
)

# ARGV mode ('get', 'count' or 'none'), task id ('' with none), owner ('' for any)
# -> {task json, polls, end, forced schedule, clock, charge state, rule JSONs...}: what one
# request reads, at once. 'count' counts a poll first (a write: it carries a deadline) and, on
# the per_poll clock, records the end (ARGV[3]) when this poll reaches the end poll.
SNAPSHOT = (
    PRELUDE
    + """
local mode, id = ARGV[5], ARGV[6]
local tk = P .. 'task:' .. id
local task, polls, e, f, state = false, false, false, false, false
if mode ~= 'none' then
  local row = redis.call('HMGET', tk, 'd', 'p', 'o', 'k', 'e', 'f')
  if row[1] and mode == 'count' and (ARGV[7] == '' or row[3] == ARGV[7]) then
    if late() then return redis.error_reply('LATE the caller has given up') end
    row[2] = redis.call('HINCRBY', tk, 'p', 1)
    if row[4] and not row[5] and row[2] >= tonumber(row[4]) then
      row[5] = clock_text()
      redis.call('HSET', tk, 'e', row[5])
      redis.call('ZADD', P .. 'ends', row[5], id)
      redis.call('ZADD', P .. 'held', 'XX', row[5], id)
    end
  elseif mode == 'count' then
    row[1] = false  -- another key's poll neither counts nor sees the task
  end
  task, polls, e, f = row[1], row[2], row[5], row[6]
  if task then state = redis.call('HGET', P .. 'charge:' .. id, 'state') end
end
local out = {task, polls, e, f, redis.call('GET', P .. 'clock'), state}
local ids = redis.call('ZRANGE', P .. 'faults:order', 0, -1)
if #ids > 0 then
  for _, rule in ipairs(redis.call('HMGET', P .. 'faults', unpack(ids))) do
    out[#out + 1] = rule
  end
end
return out
"""
)

# ARGV id, forced schedule json, its ends_at, its end poll (''), images paid, end
# -> {json, polls, end, forced} as forced; 0 missing; 2 already ended
FORCE = (
    PRELUDE
    + LATE
    + """
local id = ARGV[5]
local tk = P .. 'task:' .. id
if redis.call('EXISTS', tk) == 0 then return 0 end
if ended(id, tonumber(clock_text())) then return 2 end
redis.call('HSET', tk, 'f', ARGV[6], 's', ARGV[7], 'i', ARGV[9], 'e', ARGV[10])
if ARGV[8] ~= '' then redis.call('HSET', tk, 'k', ARGV[8]) else redis.call('HDEL', tk, 'k') end
redis.call('ZADD', P .. 'ends', ARGV[10], id)
redis.call('ZADD', P .. 'held', 'XX', ARGV[10], id)
local row = redis.call('HMGET', tk, 'd', 'p')
return {row[1], row[2], ARGV[10], ARGV[6]}
"""
)

# ARGV finished before -> {removed, tasks left}
EXPIRE = (
    PRELUDE
    + LATE
    + _BUILT
    + """
local now = tonumber(clock_text())
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'ends', '-inf', ARGV[5])) do
  n = n + remove_if_ended(id, now)
end
return {n, redis.call('ZCARD', P .. 'tasks')}
"""
)

# ARGV id, images, settled at -> 1 settled, 0 not held
SETTLE = PRELUDE + LATE + _BUILT + "return settle(ARGV[5], tonumber(ARGV[6]), ARGV[7])\n"

# -> how many settled
SETTLE_DUE = PRELUDE + LATE + _BUILT + "return settle_due(tonumber(clock_text()))\n"

# ARGV owner, label, amount ('' removes it), most (0: no bound) -> 1, or 0 when refused
SET_BALANCE = (
    PRELUDE
    + LATE
    + _BUILT
    + """
local most = tonumber(ARGV[8])
if ARGV[7] ~= '' and most > 0 and redis.call('HEXISTS', P .. 'balances', ARGV[5]) == 0
    and redis.call('HLEN', P .. 'balances') >= most then
  return 0
end
settle_due(tonumber(clock_text()))
if ARGV[7] == '' then
  redis.call('HDEL', P .. 'balances', ARGV[5])
  redis.call('HDEL', P .. 'balances:labels', ARGV[5])
else
  redis.call('HSET', P .. 'balances', ARGV[5], ARGV[7])
  redis.call('HSET', P .. 'balances:labels', ARGV[5], ARGV[6])
end
return 1
"""
)

# -> the usage sums (``usage.READ``)
USAGE_SUMS = PRELUDE + usage.READ

# ARGV seconds -> new time. Lua numbers are doubles like Python floats, and %.17g prints them
# exactly, so the shared clock adds up exactly like the in-memory one.
ADVANCE = (
    PRELUDE
    + LATE
    + """
local v = tonumber(redis.call('GET', P .. 'clock') or '0') + tonumber(ARGV[5])
local s = string.format('%.17g', v)
redis.call('SET', P .. 'clock', s)
return s
"""
)

# Reads (no prelude, no deadline: safe to repeat).
# KEYS order; ARGV key prefix, first rank (0: every member; -n: the last n), fields... -> flat
# list of the fields of those members, in order
LIST = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], tonumber(ARGV[2]), -1)) do
  local row = redis.call('HMGET', ARGV[1] .. id, unpack(ARGV, 3))
  if row[1] then for _, v in ipairs(row) do out[#out + 1] = v end end
end
return out
"""
# KEYS order, epoch; ARGV key prefix, after's number ('' for the first page), after's epoch,
# count, a new epoch (stored if the key is missing: SET NX, so a retried call agrees), fields...
# -> 0 when after is of another epoch; else {more (0/1), the last's number ('' if none), the
# epoch, the fields of each member listed, in order}. The check and the page are one step.
PAGE = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[5], 'NX')
  epoch = ARGV[5]
end
local low = '-inf'
if ARGV[2] ~= '' then
  if ARGV[3] ~= epoch then return 0 end
  low = '(' .. ARGV[2]
end
local count = tonumber(ARGV[4])
local found = redis.call('ZRANGEBYSCORE', KEYS[1], low, '+inf', 'WITHSCORES', 'LIMIT', 0,
                         count + 1)
local listed = math.min(#found / 2, count)
local out = {#found / 2 > count and 1 or 0, '', epoch}
for i = 1, listed do
  local id = found[2 * i - 1]
  out[2] = found[2 * i]
  local row = redis.call('HMGET', ARGV[1] .. id, unpack(ARGV, 6))
  if row[1] then for _, v in ipairs(row) do out[#out + 1] = v end end
end
return out
"""
