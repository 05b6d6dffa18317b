"""In-process emulators kept between tests, each put back in its start-up state.

Building an emulator (its settings checked, its tables, the Starlette app) and an event loop,
then closing them, was about a sixth of a whole in-process test
(``benchmarks/fixture_timing.py``). So the ``image_emulator`` fixture takes one from a `Pool`
held by the session (per xdist worker), and gives it back at teardown, where it is made
exactly what a fresh one would be: nothing left running on its loop (a ``hang`` fault's
answer nobody waits for is cancelled), then `Emulator.reset` (no tasks, journal, balances,
usage, added rules or hits; the configured rules back; the clock at 0; task ids from the start
of the seed's stream; the render cache empty). The next test with the same settings gets it.

Kept only where that reset is the whole of a fresh start; otherwise closed, as before:
- the store is memory (a SQLite file or a Redis database outlives the emulator, and a fresh
  one claims the next id stream on it);
- a seed is set (without one, every emulator draws its own);
- no file is named (a fresh emulator would read the file again, and it may have changed);
- the settings in force are still those it was made with (``configure()`` in the test);
- its loop still runs in place (an async test or a thread moved it to a thread of its own).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from ..stores.memory import MemoryStore
from .app_loop import AppLoop, Lease, cancel_others

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..config import Settings
    from ..usecases.emulator import Emulator

#: Settings a fresh emulator reads a file for: never kept.
_FILES = ("catalogue_file", "timing_file", "price_file", "fault_file")


def _keepable(settings: Settings) -> bool:
    return (
        settings.store_url in ("memory", "memory://")
        and settings.seed is not None
        and all(getattr(settings, name) is None for name in _FILES)
    )


class _Key:
    """Settings as the pool's key, hashed once: a frozen dataclass hashes every field on each
    lookup, and a test looked its settings up five times. Hashed by their text where a value
    is a dict (a fault rule's): equal settings with differently ordered dicts only miss."""

    __slots__ = ("_hash", "settings")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:
            self._hash = hash(settings)
        except TypeError:
            self._hash = hash(repr(settings))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Key):
            return NotImplemented
        return self.settings is other.settings or self.settings == other.settings


class InProcess:
    """One in-process emulator: its app and the loop its store belongs to."""

    def __init__(self, settings: Settings) -> None:
        from ..http.app import create_app

        self.app: Starlette = create_app(settings)
        self.emulator: Emulator = self.app.state.emulator
        #: What it was made with (the object, checked once).
        self.settings: Settings = self.emulator.settings
        self.key = _Key(self.settings)
        self.keepable = _keepable(self.settings)
        self.loop = AppLoop()
        #: The current test's way onto the loop: a kept emulator gets a new one per test,
        #: and the last test's is ended, so what that test left behind fails as on a closed
        #: emulator instead of reaching the next test's state.
        self.lease = Lease(self.loop)
        # Started now, not at the first request: a start that fails (a store kept with
        # another clock, Redis unreachable) fails the fixture's setup, saying why, instead
        # of every request of the test being refused. A kept emulator's reset starts it again.
        start = self.emulator.start()
        try:
            if type(self.emulator.store) is MemoryStore:  # never suspends: no trip on the loop
                self.loop.run_inline(start)
            else:
                self.loop.run(start)
        except BaseException:
            self.close()
            raise

    def lend(self) -> InProcess:
        self.lease = Lease(self.loop)
        return self

    def close(self) -> None:
        self.lease.end()
        # In-process transports skip the lifespan: close the store here, or an SQLite file or
        # a Redis pool would stay open after every test.
        self.loop.close(last=self.emulator.store.close())


async def _restart(emulator: Emulator) -> None:
    await cancel_others()
    await emulator.reset()


class Pool:
    """Idle in-process emulators by their settings, at most ``size`` of them."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._idle: OrderedDict[_Key, InProcess] = OrderedDict()
        #: The key of the settings object last asked for (the plugin hands the same object to
        #: every test with the same settings): hashing a `Settings` is ~14k instructions.
        self._last: _Key | None = None

    def take(self, settings: Settings) -> InProcess:
        """An emulator in its start-up state for ``settings``, started: a kept one, or a new
        one (what building or starting it raised, if it cannot start)."""
        key = self._last
        if key is None or key.settings is not settings:
            key = self._last = _Key(settings)
        # Only keepable settings are ever kept (`give_back`): others simply miss.
        kept = self._idle.pop(key, None)
        if kept is not None:
            return kept.lend()
        return InProcess(settings)

    def give_back(self, used: InProcess) -> None:
        """Keep ``used`` in its start-up state for a later test, or close it."""
        used.lease.end()
        if used.loop.in_thread or used.emulator.settings is not used.settings or not used.keepable:
            used.close()
            return
        try:
            if used.loop.has_tasks():
                used.loop.run(_restart(used.emulator))
            else:  # nothing to cancel: the reset alone, without a trip on the loop
                used.loop.run_inline(used.emulator.reset())
        except BaseException:
            used.close()
            raise
        key = used.key
        twin = self._idle.pop(key, None)
        if twin is not None:
            twin.close()
        self._idle[key] = used
        while len(self._idle) > self._size:
            self._idle.popitem(last=False)[1].close()

    def close(self) -> None:
        """Close every kept emulator (the end of the session)."""
        while self._idle:
            self._idle.popitem(last=False)[1].close()


__all__ = ["InProcess", "Pool"]
