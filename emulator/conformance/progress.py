"""Progress lines of a run: each phase when it ends, and a line every few seconds while a long
phase runs (the coverage phase sends hundreds of requests and used to be silent for ~15 s)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Progress:
    """Prints through ``out`` (None: silent); safe to tick from schemathesis' worker threads."""

    def __init__(
        self,
        out: Callable[[str], None] | None,
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out, self.every, self.clock = out, every, clock
        self._lock = threading.Lock()
        self.phase = ""
        self._count = 0
        self._started = self._last = clock()

    def start(self, phase: str) -> None:
        with self._lock:
            self.phase, self._count = phase, 0
            self._started = self._last = self.clock()

    def tick(self) -> None:
        """One more request in the current phase."""
        with self._lock:
            self._count += 1
            now = self.clock()
            if self.out is None or now - self._last < self.every:
                return
            self._last = now
            line = f"  {self.phase}: {self._count} requests so far ({now - self._started:.0f} s)"
        self.out(line)

    def finish(self, phase: str, status: str, note: str = "") -> None:
        with self._lock:
            count = self._count if phase == self.phase else 0
            elapsed = self.clock() - self._started
        if self.out is not None:
            extra = f"; {note}" if note else ""
            self.out(f"phase {phase}: {status} ({count} requests, {elapsed:.1f} s{extra})")
