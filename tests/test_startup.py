"""The emulator's start (usecases/startup.py): once, and never half-seen by a caller."""

from __future__ import annotations

import asyncio

import pytest

from emulator.config import ConfigError
from emulator.stores.memory.store import MemoryStore
from emulator.usecases.startup import Startup, TaskIds


def _gated(store: MemoryStore) -> asyncio.Event:
    """Hold ``store``'s id-stream claim until the returned event is set (as a SQLite file or a
    Redis server would keep it waiting), so a second caller comes while the start runs."""
    gate = asyncio.Event()
    claim = store.claim_id_stream

    async def gated() -> int:
        await gate.wait()
        return await claim()

    store.claim_id_stream = gated  # type: ignore[method-assign]
    return gate


async def _turns(count: int = 10) -> None:
    """Let the loop run every ready task ``count`` times (no timing: turns of the loop)."""
    for _ in range(count):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_a_caller_that_comes_while_the_start_runs_waits_for_its_end() -> None:
    store = MemoryStore()
    gate = _gated(store)
    ids = TaskIds(seed=7)
    startup = Startup(store, ids, (), clock="manual", where="memory")
    first = asyncio.create_task(startup.ensure())
    await _turns()
    second = asyncio.create_task(startup.ensure())
    await _turns()
    # Returned now, the second caller would draw ids before the stream is claimed (on a kept
    # file or a shared Redis, stream 0's: ids another process drew).
    assert not second.done() and not startup.done and ids.stream is None
    gate.set()
    await asyncio.gather(first, second)
    assert startup.done and ids.stream is not None


@pytest.mark.asyncio
async def test_a_caller_given_up_on_leaves_the_start_to_the_next() -> None:
    store = MemoryStore()
    gate = _gated(store)
    startup = Startup(store, TaskIds(seed=7), (), clock="manual", where="memory")
    first = asyncio.create_task(startup.ensure())
    second = asyncio.create_task(startup.ensure())
    await _turns()
    first.cancel()  # its client went away
    await _turns()
    gate.set()
    await second
    assert first.cancelled() and startup.done


@pytest.mark.asyncio
async def test_a_start_that_failed_is_tried_again_by_the_next_caller() -> None:
    store = MemoryStore()
    await store.claim_clock("real")  # kept with another clock: every start refuses
    startup = Startup(store, TaskIds(seed=7), (), clock="manual", where="memory")
    for _ in range(2):
        with pytest.raises(ConfigError, match="setting 'clock'"):
            await startup.ensure()
        assert not startup.done
