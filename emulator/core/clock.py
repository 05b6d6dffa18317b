"""Clocks: the wall clock, or a virtual clock that moves only when told.

The manual clock's time lives in the store, so every worker sharing a store sees one clock.
The per_poll mode uses the wall clock for timestamps; each task's progress comes from its own
poll counter instead (see ``tasks.per_poll_elapsed``).
"""

from __future__ import annotations

import time
from typing import Protocol


class ClockStore(Protocol):
    """Where the manual clock's time is kept (every ``Store`` is one): shared by every worker
    sharing the store."""

    async def clock_now(self) -> float: ...

    async def advance_clock(self, seconds: float) -> float: ...


class Clock(Protocol):
    async def now(self) -> float:
        """Current time in seconds."""
        ...


class WallClock:
    """Real time (seconds since the epoch), shared by every host with synchronised clocks.

    Never goes backwards: if the system clock is stepped back (NTP), time stands still until it
    catches up, so no task's progress ever decreases (SPEC 2.6).
    """

    def __init__(self) -> None:
        self._last = 0.0

    async def now(self) -> float:
        # max(self._last, time.time()) without the builtin's call: read on every request.
        now = time.time()
        if now > self._last:
            self._last = now
            return now
        return self._last


class ManualClock:
    """Virtual seconds, starting at 0, moved only by ``advance``."""

    def __init__(self, store: ClockStore) -> None:
        self._store = store

    async def now(self) -> float:
        return await self._store.clock_now()

    async def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("the clock never moves backwards: seconds must be >= 0")
        return await self._store.advance_clock(seconds)
