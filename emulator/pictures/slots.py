"""A semaphore that waits without a thread and works across event loops.

Picture work (rendering a result, decoding a reference) takes hundreds of megabytes for a
moment, so each emulator runs only a few at once. Waiting for a turn must not hold one of
anyio's worker threads (every SQLite call needs one: with a thread semaphore, 200 downloads
waiting for 2 render slots held all 40 threads and polls waited seconds). And one emulator may
be served by several event loops (the pytest fixture drives it from its own loop and from the
test's), so an ``anyio`` or ``asyncio`` semaphore, bound to one loop, will not do: waiters here
are futures of their own loops, woken thread-safely.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Slots:
    """At most ``count`` holders at once; ``async with slots.held(): ...``; FIFO for waiters."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._free = count
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        """Slots nobody holds right now."""
        return self._free

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:  # never granted: just leave the queue
                    self._waiters.remove(waiter)
                    raise
            # Granted (or being granted) while cancelled: hand the slot on.
            if waiter[1].done() and not waiter[1].cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, future = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(self._grant, future)
                    return
                except RuntimeError:  # that waiter's loop is closed: try the next
                    continue
            self._free += 1

    def _grant(self, future: asyncio.Future[None]) -> None:
        """Runs on the waiter's loop: wake it, or pass the slot on if it gave up meanwhile."""
        if future.cancelled():
            self.release()
        else:
            future.set_result(None)


__all__ = ["Slots"]
