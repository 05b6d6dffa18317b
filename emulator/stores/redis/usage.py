"""The Redis store's usage totals: running sums per group, kept by the Lua scripts that hold
and settle (``scripts``), so they move in the same atomic step as the charge, and read in one
script whose cost is the number of groups.

Keys (P = prefix): P:usage:<sum> hash owner\\nkey\\nmodel\\nstate -> that sum of every charge
held since the last reset (listed or trimmed), one hash per ``billing.COUNTED`` sum;
P:usage:ready, set once the sums are kept. A prefix written before the sums were kept has
charges and the sums of those trimmed from the log (P:trimmed:<sum>, hashes keyed as
P:usage:<sum>, of tasks, images, paid, taken, refunded: what versions before this one kept)
but no P:usage:ready: the first script that would move a sum (or read them) builds them from
P:charges and P:trimmed:* first, in that script, and deletes P:trimmed:* (once; its cost is
the log's: ~1 s at 100,000 charges, docs/persistence.md). Nothing writes P:trimmed:* any
more. Reset keeps P:usage:ready and deletes the sums with the charges.
"""

from __future__ import annotations

from typing import Any, cast

from ...core.billing import COUNTED, ChargeState, Sums
from .values import text

#: Lua functions for ``scripts.PRELUDE`` (they use its ``P``): ``usage_add(owner, key, model,
#: state, values, sign)`` adds (sign 1) or takes (-1) a charge's ``COUNTED`` values to its
#: group; ``usage_ready()`` builds the sums of an older prefix once (true when it built).
#: A write script builds first, before anything else it writes, and then checks its deadline
#: again (``scripts._BUILT``): a build takes ~1 s at 100,000 charges, and a write its caller
#: gave up on meanwhile (answered 503) must not happen; the build alone may (repeating it is
#: a no-op).
FUNCTIONS = """
local USAGE = {COUNTED}
local function usage_add(owner, key, model, state, values, sign)
  local group = owner .. '\\n' .. key .. '\\n' .. model .. '\\n' .. state
  for n, name in ipairs(USAGE) do
    if n == 1 or tonumber(values[n]) ~= 0 then
      redis.call('HINCRBY', P .. 'usage:' .. name, group, sign * tonumber(values[n]))
    end
  end
end
local function usage_ready()
  if redis.call('EXISTS', P .. 'usage:ready') == 1 then return false end
  for _, id in ipairs(redis.call('ZRANGE', P .. 'charges', 0, -1)) do
    local r = redis.call('HMGET', P .. 'charge:' .. id, 'owner', 'key', 'model', 'state',
                         'images', 'amount', 'taken', 'refunded', 'held')
    if r[1] then
      local held = 0
      if r[4] == 'held' then held = r[9] end
      usage_add(r[1], r[2], r[3], r[4], {1, r[5], r[6], r[7], r[8], held}, 1)
    end
  end
  for n, name in ipairs({'tasks', 'images', 'paid', 'taken', 'refunded'}) do
    local flat = redis.call('HGETALL', P .. 'trimmed:' .. name)
    for i = 1, #flat, 2 do
      redis.call('HINCRBY', P .. 'usage:' .. name, flat[i], flat[i + 1])
    end
    redis.call('DEL', P .. 'trimmed:' .. name)
  end
  redis.call('SET', P .. 'usage:ready', '1')
  return true
end
""".replace("COUNTED", ", ".join(f"'{name}'" for name in COUNTED))

#: (after ``scripts.PRELUDE``) -> the sums' hashes, one flat HGETALL each, in COUNTED order.
READ = """
usage_ready()
local out = {}
for n, name in ipairs(USAGE) do out[n] = redis.call('HGETALL', P .. 'usage:' .. name) end
return out
"""


def sums_of(columns: list[list[Any]]) -> list[Sums]:
    """`Sums` rows from `READ`'s answer (a group missing from a hash: 0)."""
    hashes = [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in columns]
    rows = []
    for group in hashes[0]:
        owner, key, model, state = text(group).split("\n")
        values = [int(column.get(group, 0)) for column in hashes]
        rows.append(Sums(owner, key, model, cast(ChargeState, state), *values))
    return rows
