"""Bounded memory: finished tasks expire after ``task_ttl_seconds``; at most ``max_tasks`` kept.

Sweeping costs a pass over the store, so it is amortised: one sweep per ``SWEEP_EVERY``
submissions, or sooner when the store may be full. Between sweeps a task past its TTL is
already answered as expired (``is_expired``), so the answer never depends on when the last
sweep ran. Charges of removed tasks are settled first and then kept: the usage log lists every
charge (SPEC section 4).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .errors import RateLimited
from .store import ended_at
from .tasks import Observation, Task

if TYPE_CHECKING:
    from .app import Emulator

#: Submissions between two sweeps when the store is far from full.
SWEEP_EVERY = 256


async def is_expired(emulator: Emulator, task: Task) -> bool:
    """Whether ``task`` ended at least ``task_ttl_seconds`` ago (swept or not)."""
    ttl = emulator.settings.task_ttl_seconds
    if ttl <= 0 or ended_at(task) + ttl > await emulator.clock.now():
        return False
    # On a time clock that means it ended; on per_poll only its polls can tell.
    return (await emulator.observe(task)).terminal


class Sweeper:
    """Decides when to sweep, and sweeps: expire, then settle what went."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        #: Tasks the store held after the last sweep (plus what was submitted since).
        self._known = 0
        #: Start due, so the first submission learns the count (a kept store may be full).
        self._since = SWEEP_EVERY

    async def before_submit(self, emulator: Emulator, now: float) -> None:
        """Make room for one more task, or refuse it: 429 when every kept task is unfinished."""
        settings = emulator.settings
        cap = settings.max_tasks
        if not cap and not settings.task_ttl_seconds:
            return
        self._since += 1
        full = bool(cap) and self._known + self._since >= cap
        if self._since < SWEEP_EVERY and not full:
            return
        # Evicting a tenth of the cap at once keeps a full store from sweeping per submission.
        keep = (cap - max(1, cap // 10) if full else cap) if cap else None
        await self.sweep(emulator, now, keep)
        if cap and self._known >= cap:
            raise RateLimited(
                f"the emulator holds max_tasks={cap} tasks and none of them has finished; "
                "retry when some finish, or raise max_tasks",
                headers={"Retry-After": "1"},
            )

    async def sweep(self, emulator: Emulator, now: float, keep: int | None) -> int:
        """Expire what is due at ``now``; the number of tasks removed."""
        ttl = emulator.settings.task_ttl_seconds
        finished_before = now - ttl if ttl > 0 else -math.inf
        expiry = await emulator.store.expire(finished_before, now, keep)
        for task in expiry.removed:
            # It ended by its schedule: give back or settle its hold before it is forgotten.
            await emulator.settle(task, Observation(task.schedule.outcome, 100))
        self._known, self._since = expiry.remaining, 0
        return len(expiry.removed)
