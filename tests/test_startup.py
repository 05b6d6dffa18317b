"""The emulator's start (usecases/startup.py): once, and never half-seen by a caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from emulator.config import ConfigError
from emulator.core.faults import Effect, FaultRule, Match
from emulator.stores import Store
from emulator.stores.memory.store import MemoryStore
from emulator.stores.sqlite import SqliteStore
from emulator.usecases.startup import Startup, TaskIds


class _Gate:
    """Holds one step of the start on ``store`` until `open` (as a SQLite file or a Redis
    server would keep it waiting), so other callers come while the start runs. The store's own
    method runs once open: only its timing is held."""

    def __init__(self, store: Store, step: str = "claim_id_stream") -> None:
        self._open = asyncio.Event()
        self._reached = asyncio.Event()
        method = getattr(store, step)

        async def gated(*args: object) -> object:
            self._reached.set()
            await self._open.wait()
            return await method(*args)

        setattr(store, step, gated)

    def open(self) -> None:
        self._open.set()

    async def reached(self) -> None:
        """Until a caller reaches the step (since the last call): on a store whose steps run
        on a thread of their own, no number of the loop's turns says when."""
        await asyncio.wait_for(self._reached.wait(), 5)  # bounded, for a failure
        self._reached.clear()


async def _turns(count: int = 10) -> None:
    """Let the loop run every ready task ``count`` times (no timing: turns of the loop)."""
    for _ in range(count):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_a_caller_that_comes_while_the_start_runs_waits_for_its_end() -> None:
    store = MemoryStore()
    gate = _Gate(store)
    ids = TaskIds(seed=7)
    startup = Startup(store, ids, (), clock="manual", where="memory")
    first = asyncio.create_task(startup.ensure())
    await _turns()
    second = asyncio.create_task(startup.ensure())
    await _turns()
    # Returned now, the second caller would draw ids before the stream is claimed (on a kept
    # file or a shared Redis, stream 0's: ids another process drew).
    assert not second.done() and not startup.done and ids.stream is None
    gate.open()
    await asyncio.gather(first, second)
    assert startup.done and ids.stream is not None


@pytest.mark.asyncio
async def test_a_start_given_up_on_midway_is_finished_by_a_caller_that_waited(
    tmp_path: Path,
) -> None:
    # A store that numbers id streams (a memory store's is always 0): the start claims one.
    store = SqliteStore(tmp_path / "emulator.db")
    try:
        rule = FaultRule("configured", Effect("drop"), Match(endpoint="poll"))
        gate = _Gate(store, "add_fault")  # the last step: the stream is claimed by then
        ids = TaskIds(seed=7)
        startup = Startup(store, ids, (rule,), clock="manual", where="sqlite")
        first = asyncio.create_task(startup.ensure())
        await gate.reached()
        second = asyncio.create_task(startup.ensure())
        await _turns()
        assert ids.stream == 0 and not second.done()
        first.cancel()  # its client went away, the start half done
        # The waiter begins the start again (a start left held by the caller given up on,
        # or its waiters left asleep, would never come here).
        await gate.reached()
        gate.open()
        await asyncio.wait_for(second, 5)  # bounded, for a failure
        assert first.cancelled() and startup.done and await store.list_faults() == [rule]
        # Begun again, the start kept the stream the given-up one claimed: claiming another,
        # the emulator would draw other ids than its seed's first ones (and leave a stream
        # claimed for nothing).
        assert ids.stream == 0 and await store.claim_id_stream() == 1
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_a_waiter_given_up_on_leaves_the_start_to_the_others() -> None:
    store = MemoryStore()
    gate = _Gate(store)
    startup = Startup(store, TaskIds(seed=7), (), clock="manual", where="memory")
    first = asyncio.create_task(startup.ensure())
    await _turns()
    waiters = [asyncio.create_task(startup.ensure()) for _ in range(2)]
    await _turns()
    waiters[0].cancel()
    await _turns()
    assert not first.done() and not waiters[1].done()
    gate.open()
    await _turns()
    assert first.done() and waiters[1].done() and waiters[0].cancelled()
    await asyncio.gather(first, waiters[1])
    assert startup.done


def test_starts_contended_on_one_loop_then_on_another() -> None:
    """The same emulator started by callers on one event loop, then after a reset on another
    (a new test client's, a new ``asyncio.run``): nothing of the first loop is waited on."""
    store = MemoryStore()
    ids = TaskIds(seed=7)
    startup = Startup(store, ids, (), clock="manual", where="memory")

    async def contended(begin: Callable[[], Coroutine[Any, Any, None]]) -> None:
        gate = _Gate(store, "list_faults")  # a step of every start, the first or again
        first = asyncio.create_task(begin())
        await _turns()
        second = asyncio.create_task(startup.ensure())
        await _turns()
        assert not second.done()
        gate.open()
        await asyncio.gather(first, second)

    asyncio.run(contended(startup.ensure))
    asyncio.run(contended(startup.again))
    assert startup.done and ids.stream == 0


@pytest.mark.asyncio
async def test_a_start_that_failed_is_tried_again_by_the_next_caller() -> None:
    store = MemoryStore()
    await store.claim_clock("real")  # kept with another clock: every start refuses
    startup = Startup(store, TaskIds(seed=7), (), clock="manual", where="memory")
    for _ in range(2):
        with pytest.raises(ConfigError, match="setting 'clock'"):
            # Bounded, for a failure: a start left held by the failed one would wait forever.
            await asyncio.wait_for(startup.ensure(), 5)
        assert not startup.done
