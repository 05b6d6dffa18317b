"""Which fault rule answers a request: the first that matches it, fires under the seed and
still has hits left (the rules themselves: ``emulator.core.faults``)."""

from __future__ import annotations

from ..core.faults import FaultRule, RequestFacts, fires, matches
from ..stores import Store
from .startup import Startup


class FaultPicker:
    """Picks the fault rule for a request; the hit is claimed in the store, atomically."""

    def __init__(self, store: Store, seed: int, startup: Startup) -> None:
        self._store, self._seed, self._startup = store, seed, startup

    async def pick(self, facts: RequestFacts) -> FaultRule | None:
        """The first rule that matches ``facts``, fires under the seed and has hits left."""
        await self._startup.ensure()
        for rule in await self._store.list_faults():
            if not matches(rule, facts):
                continue
            evaluation = await self._store.count_fault_evaluation(rule.id)
            if fires(self._seed, rule, evaluation) and await self._store.claim_fault(
                rule.id, rule.times
            ):
                return rule
        return None


__all__ = ["FaultPicker"]
