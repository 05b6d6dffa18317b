"""Bounded memory: finished tasks expire after ``task_ttl_seconds``; at most ``max_tasks`` kept.

The cap is the store's: a submission's own step evicts ended tasks when the store is full, or
refuses (429), atomically with the insert (``Store.insert_held``), so concurrent submissions to
several workers can never overfill it. The TTL is swept here: that costs a pass over what has
expired, so it is amortised to one sweep per ``SWEEP_EVERY`` submissions. Between sweeps a task
past its TTL is already answered as expired (``is_expired``), so the answer never depends on
when the last sweep ran. A removed task's charge is settled in the same step that removes it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..core.tasks import Task, ended_at

if TYPE_CHECKING:
    from .emulator import Emulator

#: Submissions between two sweeps.
SWEEP_EVERY = 256


async def is_expired(emulator: Emulator, task: Task, now: float | None = None) -> bool:
    """Whether ``task`` ended at least ``task_ttl_seconds`` before ``now`` (default: the
    clock's now), swept or not."""
    ttl = emulator.settings.task_ttl_seconds
    if now is None:
        now = await emulator.clock.now()
    if ttl <= 0 or ended_at(task) + ttl > now:
        return False
    # On a time clock that means it ended; on per_poll only its polls can tell.
    return (await emulator.observe(task)).terminal


class Sweeper:
    """Decides when to sweep expired tasks, and sweeps."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        #: Start due, so the first submission sweeps (a kept store may hold expired tasks).
        self._since = SWEEP_EVERY

    async def before_submit(self, emulator: Emulator, now: float) -> None:
        """Sweep when due (the cap is enforced by the submission's own store step)."""
        if not emulator.settings.task_ttl_seconds:
            return
        self._since += 1
        if self._since >= SWEEP_EVERY:
            await self.sweep(emulator, now)

    async def sweep(self, emulator: Emulator, now: float) -> int:
        """Expire what is due at ``now``; the number of tasks removed."""
        ttl = emulator.settings.task_ttl_seconds
        finished_before = now - ttl if ttl > 0 else -math.inf
        expiry = await emulator.store.expire(finished_before, emulator.step_now(now))
        self._since = 0
        return expiry.removed
