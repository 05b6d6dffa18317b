"""The default backend: state in this process's memory.

It is atomic because the event loop runs one coroutine at a time and none of its methods
awaits: each method's reads and writes happen with nothing in between.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from typing import Any

from ...core.billing import (
    Charge,
    ChargeBuilder,
    Settlement,
    Trimmed,
    settlement,
    trimmed_row,
)
from ...core.faults import FaultRule
from ...core.journal import PendingEntry
from ...core.tasks import Task, TaskBuilder, ended_at, has_ended, images_returned
from ..base import EVICT_AT_MOST, Expiry, Forced, Now, Placed, Store, room_after_eviction
from .end_index import EndIndex

_Group = tuple[str, str, str, str]


def _counted(t: Task, finished_at: float | None) -> Task:
    """``dataclasses.replace(t, polls=t.polls + 1, finished_at=finished_at)`` at a third of the
    cost (no field introspection, no list of the values, no ``*`` call): it runs on every
    poll. Every field by position, in `Task`'s order; tests/test_store.py fails if a field is
    missed or misplaced."""
    return TaskBuilder(
        t.task_id,
        t.owner,
        t.created_at,
        t.task_type,
        t.model,
        t.prompt,
        t.width,
        t.height,
        t.output_format,
        t.n,
        t.quality,
        t.tier,
        t.aspect_ratio,
        t.size,
        t.references,
        t.has_reference,
        t.seed,
        t.schedule,
        t.polls + 1,
        t.token,
        finished_at,
    )


def _settled(c: Charge, end: Settlement, settled_at: float, refunded: int) -> Charge:
    """``dataclasses.replace(c, state=..., images=..., amount=..., settled_at=...,
    refunded=...)`` by position, as `_counted` copies a task: every ended task is settled once,
    a full store up to ``EVICT_AT_MOST`` in one submission's step (the keyword copy was half
    of an eviction). tests/test_store.py fails if a field is missed or misplaced."""
    return ChargeBuilder(
        c.task_id,
        c.owner,
        c.key,
        c.time,
        c.model,
        c.tier,
        c.quality,
        c.n,
        c.unit_price,
        c.held,
        end.state,
        end.images,
        end.amount,
        settled_at,
        c.taken,
        refunded,
    )


def _summed(kept: Trimmed, row: Trimmed) -> Trimmed:
    """The group's sums with one more row (its five `SUMMED` fields added), by position."""
    return Trimmed(
        kept.owner,
        kept.key,
        kept.model,
        kept.state,
        kept.tasks + row.tasks,
        kept.images + row.images,
        kept.paid + row.paid,
        kept.taken + row.taken,
        kept.refunded + row.refunded,
    )


class MemoryStore(Store):
    """State in this process's memory: fast, and gone when the process ends."""

    def __init__(self, *, evict_at_most: int = EVICT_AT_MOST) -> None:
        super().__init__(evict_at_most=evict_at_most)
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        #: The tasks by end time: expiry and eviction take the earliest, not every task.
        self._ends = EndIndex()
        #: The same for settling: held charges come due when their task ends.
        self._due = EndIndex()
        self._blobs: dict[str, bytes] = {}
        self._clock = 0.0
        self._faults: dict[str, FaultRule] = {}
        self._evaluations: dict[str, int] = {}
        self._hits: dict[str, int] = {}
        #: Entries, or (seq, pending) pairs not yet read (built and kept by ``list_journal``).
        self._journal: deque[dict[str, Any] | tuple[int, PendingEntry]] = deque()
        self._journal_seq = 0
        #: The usage log in hold order; finished charges also in settlement order (to trim).
        self._charges: dict[str, Charge] = {}
        self._finished: deque[str] = deque()
        self._trimmed: dict[_Group, Trimmed] = {}
        self._balances: dict[str, tuple[str, int]] = {}

    def _now(self, now: Now) -> float:
        return self._clock if now is None else now

    # -- tasks -------------------------------------------------------------------------
    async def insert_held(
        self, task: Task, charge: Charge, blob: bytes | None, *, cap: int, now: Now
    ) -> Placed:
        if task.task_id in self._tasks:
            return "taken"
        at = self._now(now)
        if cap and len(self._tasks) >= cap:
            self._ends.pop_ended(
                self._tasks,
                at,
                len(self._tasks) - room_after_eviction(cap, self.evict_at_most),
                self._remover(at),
            )
            if len(self._tasks) >= cap:
                return "full"
        balance = self._balances.get(charge.owner)
        if balance is not None and balance[1] < charge.held:
            self._settle_due(at)  # what ended gives back first
            balance = self._balances[charge.owner]
            if balance[1] < charge.held:
                return "refused"
        if balance is not None:
            self._balances[charge.owner] = (balance[0], balance[1] - charge.held)
        taken = 0 if balance is None else charge.held
        if (charge.state, charge.taken, charge.refunded) != ("held", taken, 0):
            # Copied only when it changes: a new charge from an unlimited key (most of them)
            # is already what is stored, and a copy costs as much as the rest of this step.
            charge = dataclasses.replace(charge, state="held", taken=taken, refunded=0)
        self._charges[task.task_id] = charge
        self._tasks[task.task_id] = task
        self._ends.push(task, self._tasks)
        self._due.push(task, self._tasks)
        if blob is not None:
            self._blobs[f"ref:{task.task_id}"] = blob
        return "placed"

    async def get_task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    async def count_poll(
        self, task_id: str, owner: str | None = None, now: float | None = None
    ) -> Task | None:
        task = self._tasks.get(task_id)
        if task is None or (owner is not None and task.owner != owner):
            return None
        finished_at = task.finished_at
        ends = False
        if task.schedule.steps is not None and finished_at is None:
            # per_poll: this poll may be the one that ends it (end_poll is a search: only here)
            end_poll = task.schedule.end_poll
            ends = end_poll is not None and task.polls + 1 >= end_poll
        task = _counted(task, self._now(now) if ends else finished_at)
        self._tasks[task_id] = task
        if ends:
            self._moved(task)
        return task

    async def force_end(self, task: Task, now: Now) -> Forced:
        current = self._tasks.get(task.task_id)
        if current is None:
            return "missing"
        if has_ended(current, self._now(now)):
            return "ended"
        forced = dataclasses.replace(current, schedule=task.schedule, finished_at=task.finished_at)
        self._tasks[task.task_id] = forced
        self._moved(forced)
        return forced

    def _moved(self, task: Task) -> None:
        """``task``'s end became known or moved: index it again."""
        self._ends.push(task, self._tasks)
        self._due.push(task, self._tasks)

    async def list_tasks(self, owner: str | None = None) -> list[Task]:
        tasks = self._tasks.values()
        return [t for t in tasks if owner is None or t.owner == owner]

    async def expire(self, finished_before: float, now: Now) -> Expiry:
        at = self._now(now)
        removed = self._ends.pop_ended(self._tasks, finished_before, None, self._remover(at))
        return Expiry(removed, len(self._tasks))

    def _remover(self, at: float) -> Any:
        def remove(task: Task) -> bool:
            """Remove ``task`` if it has ended by ``at`` (the index's order is approximate at
            the last bit: a sum of floats), settling its charge."""
            if not has_ended(task, at):
                return False
            del self._tasks[task.task_id]
            self._blobs.pop(f"ref:{task.task_id}", None)
            self._settle(task.task_id, images_returned(task), ended_at(task))
            return True

        return remove

    async def put_blob(self, key: str, data: bytes) -> None:
        self._blobs[key] = data

    async def get_blob(self, key: str) -> bytes | None:
        return self._blobs.get(key)

    async def clock_now(self) -> float:
        return self._clock

    async def advance_clock(self, seconds: float) -> float:
        self._clock += seconds
        return self._clock

    async def add_fault(self, rule: FaultRule) -> None:
        self._faults.pop(rule.id, None)
        self._faults[rule.id] = rule
        self._evaluations[rule.id] = 0
        self._hits[rule.id] = 0

    async def list_faults(self) -> list[FaultRule]:
        return list(self._faults.values())

    async def remove_fault(self, rule_id: str) -> bool:
        self._evaluations.pop(rule_id, None)
        self._hits.pop(rule_id, None)
        return self._faults.pop(rule_id, None) is not None

    async def clear_faults(self) -> None:
        self._faults.clear()
        self._evaluations.clear()
        self._hits.clear()

    async def count_fault_evaluation(self, rule_id: str) -> int:
        self._evaluations[rule_id] = self._evaluations.get(rule_id, 0) + 1
        return self._evaluations[rule_id]

    async def claim_fault(self, rule_id: str, times: int | None) -> bool:
        hits = self._hits.get(rule_id, 0)
        if times is not None and hits >= times:
            return False
        self._hits[rule_id] = hits + 1
        return True

    async def fault_hits(self) -> dict[str, int]:
        return dict(self._hits)

    async def append_journal(self, entry: dict[str, Any], limit: int) -> None:
        # The entry is the caller's to give away (Store.append_journal): numbered in place.
        self._journal_seq += 1
        entry["seq"] = self._journal_seq
        self._journal.append(entry)
        while len(self._journal) > limit:
            self._journal.popleft()

    async def append_pending(self, pending: PendingEntry, limit: int) -> None:
        # Built when read: most entries are trimmed unread, and the request is not kept
        # waiting for a dict nobody may ask for (docs/profile.md).
        self._journal_seq += 1
        self._journal.append((self._journal_seq, pending))
        while len(self._journal) > limit:
            self._journal.popleft()

    async def list_journal(self) -> list[dict[str, Any]]:
        entries = [_built(item) for item in self._journal]
        # Kept built: a second read returns the same entries, at the cost of a plain copy.
        self._journal = deque(entries)
        return entries

    async def clear_journal(self) -> None:
        self._journal.clear()

    # -- billing -------------------------------------------------------------------------
    async def settle(self, task_id: str, images: int, settled_at: float) -> bool:
        return self._settle(task_id, images, settled_at)

    def _settle(self, task_id: str, images: int, settled_at: float) -> bool:
        current = self._charges.get(task_id)
        if current is None or current.state != "held":
            return False
        end = settlement(current, images)
        balance = self._balances.get(current.owner)
        refunded = 0 if balance is None else end.back
        if balance is not None:
            self._balances[current.owner] = (balance[0], balance[1] + refunded)
        self._charges[task_id] = _settled(current, end, settled_at, refunded)
        self._finished.append(task_id)
        self._trim()
        return True

    def _trim(self) -> None:
        limit = self.usage_log_limit
        while limit is not None and len(self._finished) > limit:
            row = trimmed_row(self._charges.pop(self._finished.popleft()))
            group = (row.owner, row.key, row.model, row.state)
            kept = self._trimmed.get(group) or Trimmed(*group)
            self._trimmed[group] = _summed(kept, row)

    async def settle_due(self, now: Now) -> int:
        return self._settle_due(self._now(now))

    def _settle_due(self, at: float) -> int:
        settled = 0

        def take(task: Task) -> bool:
            nonlocal settled
            charge = self._charges.get(task.task_id)
            if charge is None or charge.state != "held":
                return True  # settled already: the entry is spent
            if not has_ended(task, at):
                return False
            settled += self._settle(task.task_id, images_returned(task), ended_at(task))
            return True

        self._due.pop_ended(self._tasks, at, None, take)
        return settled

    async def list_charges(self, owner: str | None = None) -> list[Charge]:
        return [c for c in self._charges.values() if owner is None or c.owner == owner]

    async def trimmed_usage(self) -> list[Trimmed]:
        return list(self._trimmed.values())

    async def set_balance(
        self, owner: str, label: str, amount: int | None, now: Now = None
    ) -> None:
        self._settle_due(self._now(now))
        if amount is None:
            self._balances.pop(owner, None)
        else:
            self._balances[owner] = (label, amount)

    async def list_balances(self) -> dict[str, tuple[str, int]]:
        return dict(self._balances)

    async def reset(self) -> None:
        self._charges.clear()
        self._finished.clear()
        self._trimmed.clear()
        self._balances.clear()
        self._tasks.clear()
        self._ends.clear()
        self._due.clear()
        self._blobs.clear()
        self._clock = 0.0
        await self.clear_faults()
        await self.clear_journal()
        self._journal_seq = 0


def _built(item: dict[str, Any] | tuple[int, PendingEntry]) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    seq, pending = item
    entry = pending.build()
    entry["seq"] = seq
    return entry
