"""The Redis store's billing: charges settled, the usage log read by pages and by its running
sums, balances. `RedisStore` mixes it in; what each method reads and runs (the client, the
request's snapshot, the registered scripts, the key and argument builders) is the store's
own, set up by its ``__init__``. The scripts and the keys they keep are in ``scripts``."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ...core.billing import Charge, Sums
from ..base import Now
from ..pages import ChargePage, Position, new_epoch, paged
from . import usage
from .support import Snapshot, guard, guard_read
from .values import (
    CHARGE_FIELDS,
    balances_of,
    charge_of,
    charges_of,
    number,
    text,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from .support import Script


class Ledger:
    """`RedisStore`'s billing methods (see the module)."""

    if TYPE_CHECKING:  # the store's, set by RedisStore.__init__
        _redis: aioredis.Redis
        _scope: ContextVar[Snapshot | None]
        _settle: Script
        _settle_due: Script
        _list: Script
        _page: Script
        _usage_sums: Script
        _set_balance: Script

        def _k(self, *parts: str) -> str: ...

        def _args(self, now: Now = None, *, write: bool = True) -> list[Any]: ...

    @guard
    async def settle(self, task_id: str, images: int, settled_at: float) -> bool:
        scope = self._scope.get()
        if scope is not None and task_id in scope.charges and scope.charges[task_id] != "held":
            return False  # not held when this request read it, and a charge never is again
        args = [*self._args(), task_id, images, number(settled_at)]
        return bool(await self._settle([], args))

    @guard
    async def settle_due(self, now: Now) -> int:
        return int(await self._settle_due([], self._args(now)))

    @guard_read
    async def charge_page(self, after: Position | None, count: int) -> ChargePage | None:
        after, count = paged(after, count)
        # As task_page: a charge's number is its score in P:charges (given by the hold's
        # script from P:seq:charge), the epoch P:charges:epoch (the charges' own: a task
        # cursor is no charge cursor).
        args = [self._k("charge", ""), "", "", count, new_epoch(), *CHARGE_FIELDS]
        if after is not None:
            args[1:3] = [str(after[0]), after[1]]
        found = await self._page([self._k("charges"), self._k("charges", "epoch")], args)
        if found == 0:
            return None
        more, number, epoch, *flat = found
        position = (int(float(number)), text(epoch)) if number else None
        return ChargePage(charges_of(flat), position, bool(int(more)))

    @guard_read
    async def charge_tail(self, count: int) -> list[Charge]:
        count = paged(None, count)[1]
        fields = [self._k("charge", ""), str(-count), *CHARGE_FIELDS]  # the last ``count``
        return charges_of(await self._list([self._k("charges")], fields))

    @guard_read
    async def get_charge(self, task_id: str) -> Charge | None:
        row = await self._redis.hmget(self._k("charge", task_id), list(CHARGE_FIELDS))
        return None if row[0] is None else charge_of(row)

    @guard_read
    async def usage_sums(self) -> list[Sums]:
        # A script, not a pipeline: on a prefix from before the sums it builds them first.
        return usage.sums_of(await self._usage_sums([], self._args(write=False)))

    @guard
    async def set_balance(
        self, owner: str, label: str, amount: int | None, now: Now = None, most: int = 0
    ) -> bool:
        args = [*self._args(now), owner, label, "" if amount is None else amount, most]
        return bool(await self._set_balance([], args))

    @guard_read
    async def list_balances(self) -> dict[str, tuple[str, int]]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._k("balances"))
            pipe.hgetall(self._k("balances", "labels"))
            return balances_of(*await pipe.execute())


__all__ = ["Ledger"]
