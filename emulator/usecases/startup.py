"""What an emulator does once before it serves: check the store was kept with its clock, claim
a stream of task ids, install the configured fault rules. At the ASGI lifespan's start, or
lazily at the first thing that needs it (in-process transports skip the lifespan; the pytest
fixtures start theirs while they set up, so a start that fails fails the setup), and again
after a reset. Whatever the loop: the same emulator may be started on one, then on another.

A kept store (a SQLite file, a Redis prefix) holds times of the clock it was first used with:
wall seconds, manual seconds, polls. Another clock misreads them (a task made on the real
clock, served on the manual one, never moves: a forced outcome was answered 200 and never
seen), so a start on another clock is refused with a `ConfigError` naming ``clock``
(``serve`` exits 2 with it, before it listens: emulator/cli.py).

Task ids are drawn from the seed: stream 0 for the first (or only) emulator on a store, so one
seed gives one sequence of ids; every further process sharing the store (workers, a restart on
a kept SQLite file) gets a stream of its own and never draws the ids another one drew.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading

from ..config import ConfigError
from ..core.faults import FaultRule
from ..errors import EmulatorError, StoreUnavailable
from ..stores import Store, masked_url

#: Store URLs of Redis, whose state is one prefix's keys.
_REDIS_URLS = ("redis://", "rediss://", "unix://")


#: What a task's times are on each clock (the refusal says which ones a kept store holds).
_TIMES = {"real": "wall-clock seconds", "manual": "the manual clock's seconds", "per_poll": "polls"}


def store_named(url: str, prefix: str) -> str:
    """The store as a message names it: its URL (a password masked), and on Redis the prefix."""
    shown = masked_url(url)
    return f"{shown} (store_prefix {prefix!r})" if url.startswith(_REDIS_URLS) else shown


def start_problem(error: Exception, url: str) -> str:
    """Why an emulator on the store at ``url`` cannot start, from what its building or its
    start raised: what ``serve`` prints before it exits 2, and what the pytest fixtures fail
    their setup with. A store that did not answer says where it was looked for."""
    if isinstance(error, StoreUnavailable) and url.startswith(_REDIS_URLS):
        return f"{error.message} (is Redis running at {masked_url(url)}?)"
    return error.message if isinstance(error, EmulatorError) else str(error)


async def claim_clock(store: Store, mode: str, where: str) -> None:
    """Keep ``mode`` as the clock of ``store`` (named ``where``) unless it has one; ConfigError
    naming ``clock`` when the one it has is another."""
    kept = await store.claim_clock(mode)
    if kept != mode:
        times = _TIMES.get(kept, "that clock's own")
        raise ConfigError(
            f"setting 'clock': the store {where} was kept with the {kept!r} clock (its tasks'"
            f" times are {times}) and this emulator asks for the {mode!r} clock, which would"
            " misread them (a task would not move as answered); start it with clock"
            f" {kept!r} (--clock {kept}), or keep the {mode!r} clock's state apart: another"
            " state_dir, store URL or store_prefix",
            field="clock",
        )


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


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a waiter given up on is cancelled already
        waiter.set_result(None)


class Startup:
    """Checks the store's clock, claims the id stream and installs the configured rules, once
    (``ensure``)."""

    def __init__(
        self,
        store: Store,
        ids: TaskIds,
        rules: tuple[FaultRule, ...],
        *,
        clock: str,
        where: str,
    ) -> None:
        self._store, self._ids, self._rules = store, ids, rules
        #: The clock mode to claim (settings' ``clock``), and the store as a refusal names it.
        self._clock, self._where = clock, where
        #: True once a start has run to its end (read by the submission's hot path).
        self.done = False
        #: Whether a caller is running a start now; callers that come meanwhile wait for it.
        #: Not an asyncio.Lock: that binds to the loop of its first wait and refuses a wait
        #: on any other (the same emulator's start after a reset, driven from a new loop).
        self._busy = False
        #: One future per waiting caller, on that caller's own loop: nothing here belongs to
        #: a loop, and a start nobody contends makes none (the in-process fixture drives
        #: starts inline, without a running loop).
        self._waiters: list[asyncio.Future[None]] = []
        #: Guards the two above: callers on loops of other threads may come too.
        self._guard = threading.Lock()

    async def ensure(self) -> None:
        """Start now unless started (every operation that reads rules or draws ids calls it).
        Callers that come while a start runs wait for it, so none draws an id before the
        stream is claimed. A start that failed or was given up on (ConfigError ``clock``
        when the store was kept with another clock; the store unreachable; the caller's
        client gone) is begun again by the next caller, or by one that waited for it: each
        step is safe to repeat. A waiter given up on leaves the start to run for the others."""
        while not self.done:
            with self._guard:
                waiter = None
                if self._busy:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                else:
                    self._busy = True
            if waiter is None:
                try:
                    if not self.done:  # another caller's start ended meanwhile
                        await self._start()
                finally:  # ended, failed or given up on: the waiters look again
                    self._wake()
                return
            try:
                await waiter
            finally:
                with self._guard:
                    if waiter in self._waiters:  # given up on before the start ended
                        self._waiters.remove(waiter)

    async def _start(self) -> None:
        await claim_clock(self._store, self._clock, self._where)
        if self._ids.stream is None:
            self._ids.stream = await self._store.claim_id_stream()
            self._ids.restart()
        installed = {rule.id: rule for rule in await self._store.list_faults()}
        for rule in self._rules:
            # Another worker may have installed it already and counted hits: keep them.
            if installed.get(rule.id) != rule:
                await self._store.add_fault(rule)
        self.done = True

    def _wake(self) -> None:
        """Free the start for the next caller, and wake every one waiting for it: each looks
        again (done: returns; else one of them starts)."""
        with self._guard:
            self._busy = False
            waiters, self._waiters = self._waiters, []
        here = _running_loop()
        for waiter in waiters:
            loop = waiter.get_loop()
            if loop is here:
                _resolve(waiter)
                continue
            # A loop of another thread, or one not running now; a closed one (RuntimeError)
            # has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, waiter)

    async def again(self) -> None:
        """After a reset: the ids from the start of the stream, the configured rules back."""
        self._ids.restart()
        self.done = False
        await self.ensure()


__all__ = ["Startup", "TaskIds", "claim_clock", "start_problem", "store_named"]
