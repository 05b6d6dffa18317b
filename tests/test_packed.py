"""The memory store's packed records: exact for every field of `Task`, `Schedule` and `Charge`,
and untracked by the cyclic GC once it has seen them."""

from __future__ import annotations

import dataclasses
import gc
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.core.billing import Charge
from emulator.core.tasks import Schedule, Task, ended_at
from emulator.stores.memory import MemoryStore
from emulator.stores.memory import packed as packing

from .store_support import make_task, place

texts = st.text(max_size=8)
maybe_texts = st.none() | texts
floats = st.floats(allow_nan=True, allow_infinity=True)
maybe_floats = st.none() | floats
ints = st.integers(min_value=-(2**70), max_value=2**70)
maybe_ints = st.none() | ints

schedules = st.builds(
    Schedule,
    queued_s=floats,
    processing_s=floats,
    outcome=st.sampled_from(["succeeded", "failed"]),
    end_s=maybe_floats,
    error_code=maybe_texts,
    error_message=maybe_texts,
    images=ints,
    steps=maybe_ints,
)
tasks = st.builds(
    Task,
    task_id=texts,
    owner=texts,
    created_at=floats,
    task_type=st.sampled_from(["text2image", "image2image"]),
    model=texts,
    prompt=texts,
    width=ints,
    height=ints,
    output_format=texts,
    n=ints,
    quality=maybe_texts,
    tier=maybe_texts,
    aspect_ratio=maybe_texts,
    size=maybe_texts,
    references=st.lists(texts, max_size=3).map(tuple),
    has_reference=st.booleans(),
    seed=ints,
    schedule=schedules,
    polls=ints,
    token=texts,
    finished_at=maybe_floats,
)
charges = st.builds(
    Charge,
    task_id=texts,
    owner=texts,
    key=texts,
    time=floats,
    model=texts,
    tier=maybe_texts,
    quality=maybe_texts,
    n=ints,
    unit_price=ints,
    held=ints,
    state=st.sampled_from(["held", "settled", "released"]),
    images=ints,
    amount=ints,
    settled_at=maybe_floats,
    taken=ints,
    refunded=ints,
)


def exactly(value: Any) -> Any:
    """``value`` in a form equal only to itself: floats by their bits (so -0.0 is not 0.0 and
    a NaN equals itself), with their type, so 1 is not 1.0 nor True."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value),
            tuple(exactly(getattr(value, f.name)) for f in dataclasses.fields(value)),
        )
    if isinstance(value, tuple):
        return (tuple, tuple(exactly(item) for item in value))
    if isinstance(value, float):
        return (float, struct.pack("<d", value))
    return (type(value), value)


@given(tasks)
def test_a_task_unpacks_to_exactly_the_task_packed(task: Task) -> None:
    unpacked = packing.unpack_task(packing.pack_task(task))
    assert type(unpacked) is Task and type(unpacked.schedule) is Schedule
    assert exactly(unpacked) == exactly(task)


@given(charges)
def test_a_charge_unpacks_to_exactly_the_charge_packed(charge: Charge) -> None:
    unpacked = packing.unpack_charge(packing.pack_charge(charge))
    assert type(unpacked) is Charge
    assert exactly(unpacked) == exactly(charge)


@given(tasks)
def test_the_end_read_from_a_packed_task_is_the_tasks_end(task: Task) -> None:
    end, expected = packing.packed_end(packing.pack_task(task)), ended_at(task)
    # The end index compares ends with ==: the same value, or both NaN (never equal: stale).
    assert end == expected or (math.isnan(end) and math.isnan(expected))
    assert type(end) is type(expected)


def test_every_field_of_the_records_is_packed_in_its_place() -> None:
    # The layouts are read from the dataclasses: a new field is packed, or this fails.
    assert tuple(f.name for f in dataclasses.fields(Task)) == (
        *packing.HEAD_FIELDS,
        "schedule",
        *packing.TAIL_FIELDS,
    )
    assert tuple(f.name for f in dataclasses.fields(Schedule)) == packing.SCHEDULE_FIELDS
    assert tuple(f.name for f in dataclasses.fields(Charge)) == packing.CHARGE_FIELDS
    task = Task(*(f"t-{name}" for name in packing.TASK_FIELDS))  # type: ignore[arg-type]
    schedule = Schedule(*(f"s-{name}" for name in packing.SCHEDULE_FIELDS))  # type: ignore[arg-type]
    assert packing.pack_task(dataclasses.replace(task, schedule=schedule)) == (
        tuple(f"t-{name}" for name in packing.HEAD_FIELDS),
        tuple(f"s-{name}" for name in packing.SCHEDULE_FIELDS),
        *(f"t-{name}" for name in packing.TAIL_FIELDS),
    )
    charge = Charge(*(f"c-{name}" for name in packing.CHARGE_FIELDS))  # type: ignore[arg-type]
    assert packing.pack_charge(charge) == tuple(f"c-{name}" for name in packing.CHARGE_FIELDS)


@settings(max_examples=10)  # a full collection each
@given(tasks, charges)
def test_packed_records_are_exact_tuples_the_gc_stops_tracking(task: Task, charge: Charge) -> None:
    records = [packing.pack_task(task), packing.pack_charge(charge)]
    assert all(type(record) is tuple for record in records)
    # A collection untracks the tuples of atoms it sees; it sees a tuple held only by another
    # after that one (found reachable through it), which waits for the next: three levels
    # (task, head, reference URLs), three collections.
    for _ in range(3):
        gc.collect()
    assert not any(gc.is_tracked(record) for record in records)
    assert not any(gc.is_tracked(part) for part in records[0][: packing.SCHEDULE + 1])


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_poll_after_a_forced_outcome_or_a_reset_sees_the_new_schedule() -> None:
    # The store keeps the schedules of polled tasks unpacked: never one that was replaced.
    store, task = MemoryStore(), make_task(1, queued_s=50.0, processing_s=50.0)
    await place(store, task)
    polled = await store.count_poll(task.task_id)
    assert polled is not None and polled.schedule == task.schedule
    forced = dataclasses.replace(task, schedule=task.schedule.ending_now(1.0, "failed", "x", "y"))
    assert await store.force_end(forced, 2.0) == dataclasses.replace(forced, polls=1)
    polled = await store.count_poll(task.task_id)
    assert polled is not None and polled.schedule == forced.schedule
    await store.reset()
    again = make_task(1, queued_s=7.0)
    await place(store, again)
    for read in (await store.get_task(again.task_id), await store.count_poll(again.task_id)):
        assert read is not None and read.schedule == again.schedule
