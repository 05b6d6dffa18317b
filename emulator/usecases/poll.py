"""Looking a task up as a poll does: found for its owner (D-1), its poll counted (which moves it
on the per_poll clock), answered as expired once past its TTL, observed at the clock's now.

Status and progress are a pure function of the task's schedule and its elapsed time
(``emulator.core.tasks``); this reads the clock and the store for them.
"""

from __future__ import annotations

import re

from ..core.checks import shown
from ..core.clock import Clock
from ..core.tasks import Observation, Task, observe, outlived
from ..core.tasks import elapsed as task_elapsed
from ..errors import EmulatorError, TaskNotFound
from ..stores import Now, Store
from .configuration import Configuration

TASK_ID_RE = re.compile(r"^task_[0-9a-f]{32}$")


class Tasks:
    """An emulator's tasks as its clock sees them."""

    def __init__(self, store: Store, clock: Clock, config: Configuration) -> None:
        self._store, self._clock, self._config = store, clock, config

    def step_now(self, now: float) -> Now:
        """``now`` for a store step: on the manual clock the store reads its own clock inside
        the step (None), so a decision never rests on a time read before a concurrent move."""
        return None if self._config.settings.clock == "manual" else now

    async def find(self, owner: str | None, task_id: str, *, count_poll: bool = False) -> Task:
        """The task if ``owner`` may see it (None: anyone), else TaskNotFound; with
        ``count_poll`` (a GET of the task route) the poll is counted in the same step."""
        settings = self._config.settings
        task, now = None, None
        if TASK_ID_RE.match(task_id):
            if count_poll:
                # Counted on every clock (the control plane shows ``polls``); on per_poll the
                # count moves the task, and one moment serves the poll and the answer: the poll
                # that ends a task shows it.
                if settings.clock == "per_poll":
                    now = await self._clock.now()
                task = await self._store.count_poll(task_id, owner, now)
            else:
                task = await self._store.get_task(task_id)
        if task is not None and (owner is None or task.owner == owner):
            # `is_expired`, inline (a coroutine less on every poll): read the clock, then the
            # setting, as it does.
            if now is None:
                now = await self._clock.now()
            ttl = self._config.settings.task_ttl_seconds
            if (
                not outlived(task, ttl, now)
                or not observe(task.schedule, task_elapsed(task, now)).terminal
            ):
                return task
            # Only its owner learns that it existed (D-1); once swept, nobody can tell.
            message = f"task {shown(task_id)} has expired: finished tasks are kept {ttl:g} s"
        else:
            message = f"task {shown(task_id)} does not exist"
        if settings.unknown_task_status == 400:
            raise EmulatorError(message, code="task_not_exist")
        raise TaskNotFound(message)

    async def is_expired(self, task: Task, now: float | None = None) -> bool:
        """Whether ``task`` ended at least ``task_ttl_seconds`` before ``now`` (default: the
        clock's now), swept or not: the answer never depends on when the last sweep ran."""
        ttl = self._config.settings.task_ttl_seconds
        if now is None:
            now = await self._clock.now()
        if not outlived(task, ttl, now):
            return False
        # On a time clock that means it ended; on per_poll only its polls can tell. Observed
        # at ``now``: a listing's page reads the clock once, not once more for each such task.
        return observe(task.schedule, task_elapsed(task, now)).terminal

    async def elapsed(self, task: Task) -> float:
        """How far into its schedule ``task`` is: by its own polls and steps if it was
        submitted on the per_poll clock, else by this emulator's clock."""
        if task.schedule.steps is not None:
            return task_elapsed(task, 0.0)  # polls alone: no clock to read
        return task_elapsed(task, await self._clock.now())

    async def observe(self, task: Task) -> Observation:
        """Status and progress of ``task`` now (`elapsed`, inline: every poll observes)."""
        schedule = task.schedule
        if schedule.steps is not None:
            return observe(schedule, task_elapsed(task, 0.0))
        return observe(schedule, task_elapsed(task, await self._clock.now()))


__all__ = ["TASK_ID_RE", "Tasks"]
