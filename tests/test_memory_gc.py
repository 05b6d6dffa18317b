"""The memory store's records and the cyclic GC: a full store holds 100,000 tasks and their
charges, and every object of them the GC tracks is visited at each full collection (140-390 ms
at the cap before they were packed: docs/profile.md, round 7). Counts, never timings."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from emulator.stores.memory import MemoryStore

from .store_support import make_charge, make_task

pytestmark = [pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tracked() -> int:
    """Objects the cyclic GC tracks after a full collection (tuples of atoms are untracked by
    it, so the collection comes first)."""
    gc.collect()
    return len(gc.get_objects())


async def test_stored_polled_and_settled_tasks_add_almost_no_object_the_gc_tracks() -> None:
    store, batch = MemoryStore(), 2500

    async def store_poll_and_settle(first: int) -> None:
        for number in range(first, first + batch):
            task = make_task(number, created_at=float(number))
            charge = make_charge(number)
            assert await store.insert_held(task, charge, None, cap=0, now=float(number)) == "placed"
        # A poll stores a new record of the task, a settlement a new one of the charge.
        for number in range(first, first + batch):
            assert await store.count_poll(f"task_{number:032x}") is not None
        for number in range(first, first + batch, 2):
            assert await store.settle(f"task_{number:032x}", 2, float(number))

    # The growth from one batch to the next: what the store keeps bounded (the schedules of
    # the tasks polled last) is full after the first.
    await store_poll_and_settle(0)
    before = tracked()
    await store_poll_and_settle(batch)
    grown = tracked() - before
    # As frozen dataclasses (Task, Schedule, Charge) it was 3 a task; packed, none.
    assert grown < 0.5 * batch, f"{grown / batch:.2f} tracked objects a stored task"


async def test_a_long_run_past_the_cap_keeps_the_gc_and_memory_flat() -> None:
    # Submissions into a full store (evictions), polls, settlements, sweeps and a bounded usage
    # log: after the cap is reached, neither tracked objects nor allocated bytes keep growing.
    cap, rounds = 400, 30
    store = MemoryStore()
    store.usage_log_limit = 200
    await store.set_balance("owner-b", "sk-b…key", 10**12)
    number, samples = 0, []
    tracemalloc.start()
    try:
        for round_ in range(rounds):
            for _ in range(cap // 2):
                owner = "owner-b" if number % 3 == 0 else "owner-a"
                now = float(number)
                task = make_task(number, owner=owner, created_at=now, queued_s=0.5)
                charge = make_charge(number, owner=owner)
                placed = await store.insert_held(task, charge, None, cap=cap, now=now)
                assert placed == "placed"
                await store.count_poll(task.task_id, owner, now)
                number += 1
            await store.settle_due(float(number))
            await store.expire(float(number) - cap, float(number))
            if round_ >= 4:  # the cap is reached from the third round on
                samples.append((tracked(), tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()
    assert len(await store.list_tasks()) <= cap
    (objects_first, bytes_first), (objects_last, bytes_last) = samples[0], samples[-1]
    # Generous margins: a leak of one object or ~100 bytes a task would be 5,000 objects or
    # 500 KB over the 5,000 submissions between the samples.
    assert objects_last - objects_first < 1000, samples
    assert bytes_last - bytes_first < 200_000, samples


async def test_listing_the_newest_tasks_unpacks_only_those() -> None:
    # The dashboard reads the newest 1,000 of a store that may hold 100,000 (and refreshes each
    # second): unpacking every task first was ~0.5 s a call at 100,000 (docs/profile.md, round
    # 7). Each unpacked Task and Schedule is an object the GC tracks, counted at its allocation
    # (collections off, so nothing resets the count): listing 10 of 20,000 makes a few dozen,
    # unpacking all of them first (even if only 10 are kept) ~40,000.
    store, stored = MemoryStore(), 20_000
    for number in range(stored):
        task, charge = make_task(number, created_at=float(number)), make_charge(number)
        assert await store.insert_held(task, charge, None, cap=0, now=0.0) == "placed"
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        newest = await store.list_tasks(newest=10)
        made = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert [t.task_id for t in newest] == [f"task_{n:032x}" for n in range(stored - 10, stored)]
    assert made < 1_000, f"{made} tracked objects made to list 10 tasks"
