"""Values as the Redis store keeps them: read back from their hashes (a task, a charge, a
fault rule) and written as script arguments (numbers Lua reads exactly)."""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from typing import Any

from ...core.billing import Charge
from ...core.faults import FaultRule
from ...core.tasks import Task, TaskBuilder


def text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def task_of(
    data: bytes | str,
    polls: bytes | str | int,
    end: bytes | str | None = None,
    forced: bytes | str | None = None,
) -> Task:
    """A task from its hash: the JSON as submitted, its polls, its end once known (kept in
    the task only on the per_poll clock) and the schedule a forced outcome put in place."""
    raw = json.loads(data)
    raw["polls"] = int(polls)
    if forced:
        raw["schedule"] = json.loads(forced)
    if end and raw["schedule"].get("steps") is not None:
        raw["finished_at"] = float(end)
    return Task.from_dict(raw)


_TASK_FIELDS = tuple(field.name for field in dataclasses.fields(Task))
_task_values = operator.attrgetter(*_TASK_FIELDS)
_POLLS, _FINISHED_AT = _TASK_FIELDS.index("polls"), _TASK_FIELDS.index("finished_at")


def tasks_of(flat: list[Any]) -> list[Task]:
    """Tasks from a script's flat answer: four values each, as `task_of` takes them."""
    return [task_of(*flat[i : i + 4]) for i in range(0, len(flat), 4)]


class TaskReader:
    """``task_of`` with each task's JSON decoded once per process: a task's JSON never changes
    once stored (its polls, end and forced schedule are other fields), so the task decoded from
    the same bytes is the same, and each read only copies it with its polls and end (as the
    memory store copies a polled task). JSON decoding and building the task's dataclasses were
    the largest part of reading it. Keeps at most ``LIMIT`` decoded tasks (forgets them all
    when full: those still polled come back at their next read)."""

    LIMIT = 2048

    def __init__(self) -> None:
        self._decoded: dict[bytes | str, Task] = {}

    def __call__(
        self,
        data: bytes | str,
        polls: bytes | str | int,
        end: bytes | str | None = None,
        forced: bytes | str | None = None,
    ) -> Task:
        if forced:  # rare (a forced outcome): decoded in full
            return task_of(data, polls, end, forced)
        task = self._decoded.get(data)
        if task is None:
            if len(self._decoded) >= self.LIMIT:
                self._decoded.clear()
            task = self._decoded[data] = task_of(data, 0)
        values = list(_task_values(task))
        values[_POLLS] = int(polls)
        if end and task.schedule.steps is not None:
            values[_FINISHED_AT] = float(end)
        return TaskBuilder(*values)  # a Task, at a plain class's cost (core/frozen.py)


#: A charge's hash fields: its JSON as held, then what the hold and settling set.
CHARGE_FIELDS = ("d", "state", "images", "amount", "settled_at", "taken", "refunded")


def charge_of(row: list[Any]) -> Charge:
    """A charge from its CHARGE_FIELDS values."""
    data, state, images, amount, settled_at, taken, refunded = row
    raw = json.loads(data)
    raw.update(
        state=text(state),
        images=int(images),
        amount=int(amount),
        settled_at=float(settled_at) if settled_at else None,
        taken=int(taken),
        refunded=int(refunded),
    )
    return Charge(**raw)


def charges_of(flat: list[Any]) -> list[Charge]:
    """Charges from a script's flat answer: `CHARGE_FIELDS` values each."""
    width = len(CHARGE_FIELDS)
    return [charge_of(flat[i : i + width]) for i in range(0, len(flat), width)]


def journal_of(raws: list[Any]) -> list[dict[str, Any]]:
    """Journal entries from the list's items, each ``<seq>\\n<entry's JSON>``."""
    entries = []
    for raw in raws:
        seq, _, data = text(raw).partition("\n")
        entries.append(json.loads(data) | {"seq": int(seq)})
    return entries


def balances_of(amounts: dict[Any, Any], labels: dict[Any, Any]) -> dict[str, tuple[str, int]]:
    """Balances by owner (its label, its amount) from the two hashes that hold them."""
    return {
        text(owner): (text(labels.get(owner, b"")), int(amount))
        for owner, amount in amounts.items()
    }


def number(value: float | None) -> str:
    """A float as Redis and Lua read it back exactly ('' for None, '+inf' for infinity)."""
    if value is None:
        return ""
    return "+inf" if value == math.inf else repr(float(value))


def end_poll(task: Task) -> str:
    """The task's end poll as a script argument ('' on a time clock)."""
    poll = task.schedule.end_poll
    return "" if poll is None else str(poll)


def rule_of(data: bytes | str) -> FaultRule:
    return FaultRule.from_dict(json.loads(data))
