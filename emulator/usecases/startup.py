"""What an emulator does once before it serves: claim a stream of task ids, install the
configured fault rules. Lazily, at the first thing that needs it (in-process transports skip
the ASGI lifespan), and again after a reset.

Task ids are drawn from the seed: stream 0 for the first (or only) emulator on a store, so one
seed gives one sequence of ids; every further process sharing the store (workers, a restart on
a kept SQLite file) gets a stream of its own and never draws the ids another one drew.
"""

from __future__ import annotations

import random

from ..core.faults import FaultRule
from ..stores import Store


class TaskIds:
    """The task ids of one emulator: a seeded stream, ``task_<32 hex digits>``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        #: The store's stream number once claimed (None: not yet; ids come from stream 0).
        self.stream: int | None = None
        self.restart()

    def restart(self) -> None:
        """Back to the first id of this emulator's stream."""
        stream = self.stream or 0
        #: The stream itself: an id is ``f"task_{rng.getrandbits(128):032x}"``.
        self.rng = random.Random(self.seed if stream == 0 else f"{self.seed}:ids:{stream}")


class Startup:
    """Claims the id stream and installs the configured rules, once (``ensure``)."""

    def __init__(self, store: Store, ids: TaskIds, rules: tuple[FaultRule, ...]) -> None:
        self._store, self._ids, self._rules = store, ids, rules
        self.done = False

    async def ensure(self) -> None:
        """Start now unless started (every operation that reads rules or draws ids calls it)."""
        if not self.done:
            self.done = True
            if self._ids.stream is None:
                self._ids.stream = await self._store.claim_id_stream()
                self._ids.restart()
            installed = {rule.id: rule for rule in await self._store.list_faults()}
            for rule in self._rules:
                # Another worker may have installed it already and counted hits: keep them.
                if installed.get(rule.id) != rule:
                    await self._store.add_fault(rule)

    async def again(self) -> None:
        """After a reset: the ids from the start of the stream, the configured rules back."""
        self._ids.restart()
        self.done = False
        await self.ensure()


__all__ = ["Startup", "TaskIds"]
