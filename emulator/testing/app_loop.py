"""The one event loop an in-process emulator runs on, whoever calls it and from where.

An emulator's store belongs to one loop: a Redis pool is bound to the loop that made it, and
the SQLite store hands its work to that loop's worker threads. The pytest fixture reaches the
emulator from sync tests, from async tests (pytest-asyncio, anyio) whose own loop is running
in the test's thread, and from threads of the code under test. `AppLoop` serves them all on
one loop, and only one:

- a sync caller in the thread that made it, with no loop running there (a sync test), drives
  the loop in place with ``run_until_complete``: no thread hop, the fast path;
- any other caller (an async test's coroutine, a sync call made while the test's loop runs,
  another thread) moves the loop into a thread of its own for the rest of its life and hands
  it the work with ``run_coroutine_threadsafe``: a sync caller blocks until it is done (an
  async test's loop waits with it), a coroutine awaits it.

A loop that something else runs (a live server's) is used the second way from the start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, NoReturn, Protocol, TypeVar

T = TypeVar("T")
#: What a call on a closed emulator raises (a test's leftovers once its test is over).
CLOSED = "this emulator is closed: its test is over"


class Runner(Protocol):
    """What a handle and the in-process transports run their work with."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T: ...

    def run_inline(self, coro: Coroutine[Any, Any, T]) -> T: ...

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T: ...


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class AppLoop:
    """Runs coroutines on one event loop for sync and async callers alike."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """A private loop (None), or ``loop``, already running in another thread."""
        self._owner = threading.get_ident()
        self._lock = threading.Lock()
        self._own = loop is None
        self._loop = loop if loop is not None else asyncio.new_event_loop()
        #: True once the loop runs in a thread: from then on every caller hands it work.
        self._served = loop is not None
        self._thread: threading.Thread | None = None

    @property
    def in_thread(self) -> bool:
        """Whether callers hand work to a thread (True) or drive the loop in place."""
        return self._served

    def has_tasks(self) -> bool:
        """Whether a task on the loop has not ended (work a test left running)."""
        return bool(asyncio.all_tasks(self._loop))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result; for sync callers, from anywhere."""
        running = _running_loop()
        if running is None and not self._served and threading.get_ident() == self._owner:
            with self._lock:
                if not self._served:
                    self._check_open(coro)
                    return self._run_here(coro)
        if running is self._loop:
            coro.close()
            raise RuntimeError(
                "a blocking call made on the emulator's own event loop would wait for itself"
            )
        return self._submit(coro).result()

    def run_inline(self, coro: Coroutine[Any, Any, T]) -> T:
        """`run` for work that never suspends (steering an in-memory store, whose methods
        never await): where `run` would drive the loop in place, the coroutine is run right
        here instead, in a copy of the context as a task would, without a trip on the loop
        (~50k of a life-cycle test's ~6.5M instructions a call). Work that suspends all the
        same is a bug: closed, and RuntimeError. Elsewhere (the loop in a thread, a loop
        running here), exactly `run`."""
        if _running_loop() is None and not self._served and threading.get_ident() == self._owner:
            with self._lock:
                if not self._served:
                    self._check_open(coro)
                    try:
                        contextvars.copy_context().run(coro.send, None)
                    except StopIteration as done:
                        result: T = done.value
                        return result
                    coro.close()
                    raise RuntimeError("work run inline on the emulator's loop suspended")
        return self.run(coro)

    def _run_here(self, coro: Coroutine[Any, Any, T]) -> T:
        """``run_until_complete(coro)``, one turn of the loop shorter: the work stops the loop
        as it ends, where run_until_complete's done callback stopped it a turn later (a
        select and ~28k of ~73k instructions a trip, five trips an in-process test). What
        the work left scheduled runs first on the next trip instead of last on this one."""
        live = [True]
        task = self._loop.create_task(_then_stop(coro, live))
        try:
            self._loop.run_forever()
        except BaseException:
            live[0] = False  # an interrupted trip's work must not stop a later trip's loop
            if task.done() and not task.cancelled():
                task.exception()  # raised here: not "never retrieved" as well
            raise
        if not task.done():
            live[0] = False
            raise RuntimeError("Event loop stopped before Future completed.")
        return task.result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` run on the loop; for coroutines on any asyncio loop."""
        running = _running_loop()
        if running is self._loop:
            return await coro  # already home (e.g. the emulator's own outgoing request)
        if running is None:
            coro.close()
            raise RuntimeError(
                "the in-process emulator's async client needs asyncio (pytest-asyncio, or "
                "anyio's asyncio backend); under another async library use "
                "image_emulator_live, a real server"
            )
        return await asyncio.wrap_future(self._submit(coro))

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if not self._served:
            with self._lock:  # waits for a run in place (in the owner's thread) to end
                if not self._served:
                    self._check_open(coro)
                    self._thread = threading.Thread(
                        target=self._loop.run_forever, name="image-emulator-loop", daemon=True
                    )
                    self._thread.start()
                    self._served = True
        self._check_open(coro)
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _check_open(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._loop.is_closed():
            _refuse(coro)

    def close(self, last: Coroutine[Any, Any, object] | None = None) -> None:
        """Run ``last`` (e.g. closing the store), cancel what still runs (a hung answer nobody
        waits for any more), then stop and close the loop; one trip to the loop in all. A
        loop that something else runs is left to it (``last`` still runs there)."""
        if not self._own or self._loop.is_closed():
            if last is not None:
                self.run(last)
            return
        try:
            self.run(_wind_down(last))
        finally:
            if self._thread is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
            self._loop.close()


class Lease:
    """One test's way onto an `AppLoop` that outlives it (the fixture's pool keeps it for the
    next test): `end` at teardown, after which every call fails as a closed emulator's did,
    so a client, handle or thread kept from the test never reaches the next test's state."""

    def __init__(self, loop: AppLoop) -> None:
        self._loop = loop
        self.ended = False

    def end(self) -> None:
        self.ended = True

    # A call still running when the test ends (a thread waiting on an answer a ``hang`` fault
    # holds) is cancelled by the teardown: its caller gets the closed emulator's RuntimeError,
    # not a CancelledError (asyncio's is a BaseException, which ``except Exception`` misses).
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.ended:
            _refuse(coro)
        try:
            return self._loop.run(coro)
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            if self.ended and not _cancelling():
                raise RuntimeError(CLOSED) from None
            raise

    def run_inline(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.ended:
            _refuse(coro)
        return self._loop.run_inline(coro)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.ended:
            _refuse(coro)
        try:
            return await self._loop.arun(coro)
        except asyncio.CancelledError:
            if self.ended and not _cancelling():
                raise RuntimeError(CLOSED) from None
            raise


def _cancelling() -> bool:
    """Whether the caller's own task is being cancelled (then the CancelledError is its own,
    and must go on: its loop is stopping it)."""
    task = asyncio.current_task() if _running_loop() is not None else None
    return task is not None and task.cancelling() > 0


async def _then_stop(coro: Coroutine[Any, Any, T], live: list[bool]) -> T:
    try:
        return await coro
    finally:
        if live[0]:
            asyncio.get_running_loop().stop()


def _refuse(coro: Coroutine[Any, Any, Any]) -> NoReturn:
    coro.close()
    raise RuntimeError(CLOSED)


async def cancel_others() -> None:
    """Cancel every task of the running loop but the caller's, and wait until they end (what
    a test left running must not outlive it)."""
    me = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not me]
    for task in others:
        task.cancel()
    if others:
        await asyncio.gather(*others, return_exceptions=True)


async def _wind_down(last: Coroutine[Any, Any, object] | None) -> None:
    loop = asyncio.get_running_loop()
    try:
        if last is not None:
            await last
    finally:
        await cancel_others()
        await loop.shutdown_asyncgens()
        await loop.shutdown_default_executor()
