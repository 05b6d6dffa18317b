"""The memory store's long-lived records as plain tuples, which the cyclic GC does not scan.

A full store holds 100,000 tasks and their charges. As frozen slotted dataclasses (`Task`,
its `Schedule`, `Charge`) each is an object the cyclic GC tracks and visits at every full
collection: 200-390 ms each at the cap (docs/profile.md, rounds 6 and 7). CPython stops
tracking an exact ``tuple`` whose items are all untracked (str, int, float, bool, None, such
tuples) at a collection that sees it. So the store keeps tuples of the fields, and unpacks
them into the dataclasses it hands out: its methods take and return `Task` and `Charge` as
before.

A packed task is ``(head, schedule, polls, token, finished_at)``: ``head`` the fields before
``schedule`` and ``schedule`` its fields, each a tuple that no poll changes; a poll stores a new
five-tuple around the same two (copying all 21 fields cost a poll ~4k instructions; the
store's ``count_poll`` builds it in place). A young
collection untracks the inner tuples and the next one the outer (it is met first, the inner
ones still tracked): none reaches the old generation that full collections scan, but a task
with reference URLs, a tuple in ``head``, takes one collection more. A packed charge is its
fields in order.

The layouts are read from ``dataclasses.fields``: a field added to `Schedule`, `Charge` or to
`Task` before ``schedule`` is packed with no change here; one after it fails at import.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable
from typing import Any

from ...core.billing import Charge, ChargeBuilder
from ...core.tasks import Schedule, ScheduleBuilder, Task, TaskBuilder

#: A `Task` as ``(head, schedule, polls, token, finished_at)``, ``head`` and ``schedule``
#: tuples of fields.
PackedTask = tuple[Any, ...]
#: A `Charge` as a tuple of its fields.
PackedCharge = tuple[Any, ...]

TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task))
SCHEDULE_FIELDS = tuple(f.name for f in dataclasses.fields(Schedule))
CHARGE_FIELDS = tuple(f.name for f in dataclasses.fields(Charge))
#: The fields of a task's ``head``: those before its schedule.
HEAD_FIELDS = TASK_FIELDS[: TASK_FIELDS.index("schedule")]
#: The fields after the schedule, each kept in the packed task itself.
TAIL_FIELDS = ("polls", "token", "finished_at")
if TASK_FIELDS[len(HEAD_FIELDS) + 1 :] != TAIL_FIELDS:
    raise TypeError(f"Task's fields after schedule are not {TAIL_FIELDS}: repack them here")

#: Where a packed task keeps its parts.
HEAD, SCHEDULE, POLLS, TOKEN, FINISHED_AT = range(5)
#: In a task's head.
TASK_ID = HEAD_FIELDS.index("task_id")
OWNER = HEAD_FIELDS.index("owner")
CREATED_AT = HEAD_FIELDS.index("created_at")
#: In a packed schedule.
QUEUED_S = SCHEDULE_FIELDS.index("queued_s")
PROCESSING_S = SCHEDULE_FIELDS.index("processing_s")
END_S = SCHEDULE_FIELDS.index("end_s")
STEPS = SCHEDULE_FIELDS.index("steps")
#: In a packed charge.
CHARGE_OWNER = CHARGE_FIELDS.index("owner")
CHARGE_STATE = CHARGE_FIELDS.index("state")

# One C call reads several fields into an exact tuple (operator.attrgetter with many names).
_head_values = operator.attrgetter(*HEAD_FIELDS)
_schedule_values = operator.attrgetter(*SCHEDULE_FIELDS)
pack_charge = operator.attrgetter(*CHARGE_FIELDS)
"""``charge`` as a `PackedCharge`: its fields in order, in one tuple."""
#: ``TaskBuilder`` called with the fields by position.
_build_task: Callable[..., Task] = TaskBuilder


def pack_task(task: Task) -> PackedTask:
    """``task`` as a `PackedTask`."""
    head = _head_values(task)
    return (head, _schedule_values(task.schedule), task.polls, task.token, task.finished_at)


def id_of(packed: PackedTask) -> str:
    """The id of the task ``packed`` holds."""
    value: str = packed[HEAD][TASK_ID]
    return value


def owner_of(packed: PackedTask) -> str:
    """The owner of the task ``packed`` holds."""
    value: str = packed[HEAD][OWNER]
    return value


def unpack_task(packed: PackedTask, schedule: Schedule | None = None) -> Task:
    """The `Task` ``packed`` holds (``TaskBuilder``: a `Task` at the cost of a plain class);
    ``schedule``: its schedule, already unpacked."""
    if schedule is None:
        schedule = ScheduleBuilder(*packed[SCHEDULE])
    return _build_task(*packed[HEAD], schedule, packed[POLLS], packed[TOKEN], packed[FINISHED_AT])


def unpack_charge(packed: PackedCharge) -> Charge:
    """The `Charge` ``packed`` holds."""
    return ChargeBuilder(*packed)


class Schedules:
    """The unpacked schedules of the tasks read last (polled or got), at most ``limit``, the
    oldest built dropped first: a client polls a task again and again, and building its
    `Schedule` on each poll (~3k instructions) was most of what packing added to one. An entry
    counts only for the very tuple it was built from: a schedule replaced (a forced outcome),
    or another task under the same id (after a reset), is built anew."""

    __slots__ = ("_kept", "_limit")

    def __init__(self, limit: int = 1024) -> None:
        self._kept: dict[str, tuple[tuple[Any, ...], Schedule]] = {}
        self._limit = limit

    def of(self, packed: PackedTask) -> Schedule:
        """The `Schedule` of the task ``packed`` holds."""
        fields, key = packed[SCHEDULE], packed[HEAD][TASK_ID]
        kept = self._kept.get(key)
        if kept is not None and kept[0] is fields:
            return kept[1]
        schedule = ScheduleBuilder(*fields)
        if len(self._kept) >= self._limit:
            del self._kept[next(iter(self._kept))]  # the oldest (insertion order)
        self._kept[key] = (fields, schedule)
        return schedule

    def clear(self) -> None:
        self._kept.clear()


def packed_end(packed: PackedTask) -> float:
    """``core.tasks.ended_at`` of the task ``packed`` holds, read from the tuple: the end index
    asks it of every entry it pops, live or stale. tests/test_packed.py checks it against
    ``ended_at`` for any task."""
    schedule = packed[SCHEDULE]
    end: float
    if schedule[STEPS] is None:
        end_s = schedule[END_S]
        end = packed[HEAD][CREATED_AT] + (
            schedule[QUEUED_S] + schedule[PROCESSING_S] if end_s is None else end_s
        )
    else:
        finished_at = packed[FINISHED_AT]
        end = math.inf if finished_at is None else finished_at
    return end


__all__ = [
    "CHARGE_FIELDS",
    "PackedCharge",
    "PackedTask",
    "Schedules",
    "id_of",
    "owner_of",
    "pack_charge",
    "pack_task",
    "packed_end",
    "unpack_charge",
    "unpack_task",
]
