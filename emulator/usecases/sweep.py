"""Bounded memory: finished tasks expire after ``task_ttl_seconds``; at most ``max_tasks`` kept.

The cap is the store's: a submission's own step evicts ended tasks when the store is full, or
refuses (429), atomically with the insert (``Store.insert_held``), so concurrent submissions to
several workers can never overfill it. The TTL is swept here: that costs a pass over what has
expired, so it is amortised to one sweep per ``SWEEP_EVERY`` submissions. Between sweeps a task
past its TTL is already answered as expired (``Tasks.is_expired``), so the answer never depends
on when the last sweep ran. A removed task's charge is settled in the same step that removes it.
"""

from __future__ import annotations

import math

from ..stores import Store
from .configuration import Configuration
from .poll import Tasks

#: Submissions between two sweeps.
SWEEP_EVERY = 256


class Sweeper:
    """Decides when to sweep expired tasks, and sweeps."""

    def __init__(self, store: Store, config: Configuration, tasks: Tasks) -> None:
        self._store, self._config, self._tasks = store, config, tasks
        self.reset()

    def reset(self) -> None:
        #: Start due, so the first submission sweeps (a kept store may hold expired tasks).
        self._since = SWEEP_EVERY

    async def before_submit(self, now: float) -> None:
        """Sweep when due (the cap is enforced by the submission's own store step)."""
        if not self._config.settings.task_ttl_seconds:
            return
        self._since += 1
        if self._since >= SWEEP_EVERY:
            await self.sweep(now)

    async def sweep(self, now: float) -> int:
        """Expire what is due at ``now``; the number of tasks removed."""
        ttl = self._config.settings.task_ttl_seconds
        finished_before = now - ttl if ttl > 0 else -math.inf
        expiry = await self._store.expire(finished_before, self._tasks.step_now(now))
        self._since = 0
        return expiry.removed


__all__ = ["SWEEP_EVERY", "Sweeper"]
