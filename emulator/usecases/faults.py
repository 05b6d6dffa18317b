"""Which fault rule answers a request: the first that matches it, fires under the seed and
still has hits left (the rules themselves: ``emulator.core.faults``)."""

from __future__ import annotations

from collections.abc import Callable

from ..core.faults import FaultRule, RequestFacts, fires, matches
from ..stores import Store
from .startup import Startup


class FaultPicker:
    """Picks the fault rule for a request; the hit is claimed in the store, atomically."""

    def __init__(self, store: Store, seed: int, startup: Startup) -> None:
        self._store, self._seed, self._startup = store, seed, startup

    async def pick(self, gather: Callable[[], RequestFacts]) -> FaultRule | None:
        """The first rule that matches the facts ``gather`` returns, fires under the seed and
        has hits left. The facts are gathered only when some rule is installed: most requests
        meet none, and gathering them costs more than the rest of the choice."""
        await self._startup.ensure()
        rules = await self._store.list_faults()
        if not rules:
            return None
        facts = gather()
        for rule in rules:
            if not matches(rule, facts):
                continue
            evaluation = await self._store.count_fault_evaluation(rule.id)
            if fires(self._seed, rule, evaluation) and await self._store.claim_fault(
                rule.id, rule.times
            ):
                return rule
        return None


__all__ = ["FaultPicker"]
