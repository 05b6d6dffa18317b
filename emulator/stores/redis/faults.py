"""The Redis store's fault rules: their scripts, and the store methods that install, list,
remove and count them. `RedisStore` mixes it in, as it does `Ledger`; what each method reads
and runs (the client, the request's snapshot, the registered scripts, the key and argument
builders) is the store's own, set up by its ``__init__``.

Keys (P = prefix, as in ``scripts``): P:faults hash id -> rule JSON, P:faults:order zset id by
insertion order (numbered from P:seq:fault), P:faults:evals / P:faults:hits hash id -> count.
A request's snapshot (``scripts.SNAPSHOT``) reads the rules with its task and clock.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ...core.faults import FaultRule
from ..base import Now
from .scripts import LATE, PRELUDE
from .support import Snapshot, guard, guard_read
from .values import rule_of, text

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ...core.tasks import Task
    from .support import Script

# ARGV rule id, rule json
ADD_FAULT = (
    PRELUDE
    + LATE
    + """
redis.call('HSET', P .. 'faults', ARGV[5], ARGV[6])
redis.call('ZADD', P .. 'faults:order', redis.call('INCR', P .. 'seq:fault'), ARGV[5])
redis.call('HSET', P .. 'faults:evals', ARGV[5], 0)
redis.call('HSET', P .. 'faults:hits', ARGV[5], 0)
"""
)
# ARGV rule id ('' for every rule), the rule's serial (absent: any) -> rules removed (every
# rule); the hits the rule had taken, or -1 when there was no such rule (one rule)
REMOVE_FAULT = (
    PRELUDE
    + LATE
    + """
local keys = {P .. 'faults', P .. 'faults:order', P .. 'faults:evals', P .. 'faults:hits'}
if ARGV[5] == '' then
  local n = redis.call('HLEN', keys[1])
  redis.call('DEL', unpack(keys))
  return n
end
local rule = redis.call('HGET', keys[1], ARGV[5])
if ARGV[6] and (not rule or cjson.decode(rule)['serial'] ~= ARGV[6]) then return -1 end
local hits = tonumber(redis.call('HGET', keys[4], ARGV[5]) or '0')
redis.call('HDEL', keys[1], ARGV[5])
redis.call('ZREM', keys[2], ARGV[5])
redis.call('HDEL', keys[3], ARGV[5])
redis.call('HDEL', keys[4], ARGV[5])
if not rule then return -1 end
return hits
"""
)
# ARGV rule id -> its evaluations, this one counted
COUNT_EVALUATION = PRELUDE + LATE + "return redis.call('HINCRBY', P .. 'faults:evals', ARGV[5], 1)"
# ARGV rule id, times ('' = unlimited) -> 1 taken, 0 spent
CLAIM = (
    PRELUDE
    + LATE
    + """
local hits = tonumber(redis.call('HGET', P .. 'faults:hits', ARGV[5]) or '0')
if ARGV[6] ~= '' and hits >= tonumber(ARGV[6]) then return 0 end
redis.call('HINCRBY', P .. 'faults:hits', ARGV[5], 1)
return 1
"""
)
# A read (no prelude, no deadline: safe to repeat).
# KEYS faults, order -> rule JSONs in order
LIST_FAULTS = """
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(ids))
"""


class FaultRules:
    """`RedisStore`'s fault-rule methods (see the module)."""

    if TYPE_CHECKING:  # the store's, set by RedisStore.__init__
        _redis: aioredis.Redis
        _scope: ContextVar[Snapshot | None]
        _add_fault: Script
        _remove_fault: Script
        _count_evaluation: Script
        _claim: Script
        _list_faults: Script

        def _k(self, *parts: str) -> str: ...

        def _args(self, now: Now = None, *, write: bool = True) -> list[Any]: ...

        def _forget(self) -> None: ...

        async def _read(
            self,
            scope: Snapshot,
            mode: str,
            task_id: str | None,
            owner: str | None = None,
            now: float | None = None,
        ) -> Task | None: ...

    @guard
    async def add_fault(self, rule: FaultRule) -> None:
        self._forget()
        await self._add_fault([], [*self._args(), rule.id, json.dumps(rule.stored())])

    @guard_read
    async def list_faults(self) -> list[FaultRule]:
        scope = self._scope.get()
        if scope is not None:
            if not scope.fresh():
                await self._read(scope, "none", None)
            return list(scope.faults or ())
        rows = await self._list_faults([self._k("faults"), self._k("faults", "order")])
        return [rule_of(row) for row in rows if row is not None]

    @guard
    async def remove_fault(self, rule_id: str, serial: str | None = None) -> int | None:
        self._forget()
        args = [*self._args(), rule_id, *(() if serial is None else (serial,))]
        hits = int(await self._remove_fault([], args))
        return None if hits < 0 else hits

    @guard
    async def clear_faults(self) -> None:
        self._forget()
        await self._remove_fault([], [*self._args(), ""])

    @guard
    async def count_fault_evaluation(self, rule_id: str) -> int:
        return int(await self._count_evaluation([], [*self._args(), rule_id]))

    @guard
    async def claim_fault(self, rule_id: str, times: int | None) -> bool:
        args = [*self._args(), rule_id, "" if times is None else str(times)]
        return bool(await self._claim([], args))

    @guard_read
    async def fault_hits(self) -> dict[str, int]:
        raw = await self._redis.hgetall(self._k("faults", "hits"))
        return {text(k): int(v) for k, v in raw.items()}

    @guard_read
    async def fault_rule_hits(self, rule_id: str) -> tuple[str, int] | None:
        async with self._redis.pipeline(transaction=True) as pipe:  # MULTI: one step
            pipe.hget(self._k("faults"), rule_id)
            pipe.hget(self._k("faults", "hits"), rule_id)
            rule, hits = await pipe.execute()
        return None if rule is None else (rule_of(rule).serial, int(hits or 0))


__all__ = ["FaultRules"]
