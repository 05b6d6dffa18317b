"""The default backend: state in this process's memory.

It is atomic because the event loop runs one coroutine at a time and none of its methods
awaits: each method's reads and writes happen with nothing in between.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from itertools import islice
from typing import Any

from ...core.billing import Charge, Settlement, Sums, settlement
from ...core.faults import FaultRule
from ...core.journal import PendingEntry
from ...core.tasks import Task, ended_at, has_ended, images_returned
from ..base import EVICT_AT_MOST, Expiry, Forced, Now, Placed, Store, evictions_due
from ..pages import ChargePage, JournalPage, Position, TaskPage, listed_at_most, paged
from .end_index import EndIndex
from .journal import Journal
from .order import SubmissionOrder
from .packed import (
    CHARGE_FIELDS,
    CHARGE_OWNER,
    CHARGE_STATE,
    HEAD,
    OWNER,
    PackedCharge,
    PackedTask,
    Schedules,
    id_of,
    owner_of,
    pack_charge,
    pack_task,
    unpack_charge,
    unpack_task,
)
from .usage_log import UsageLog

#: A settlement replaces a charge's fields from ``state`` to ``settled_at``, keeps ``taken``
#: and replaces ``refunded`` (`_settled`).
_TAKEN = CHARGE_FIELDS.index("taken")


def _settled(c: PackedCharge, end: Settlement, settled_at: float, refunded: int) -> PackedCharge:
    """The packed charge ``c`` settled: ``dataclasses.replace(c, state=..., images=...,
    amount=..., settled_at=..., refunded=...)`` on the tuple, by position (every ended task is
    settled once, a full store up to ``evict_at_most`` in one submission's step).
    tests/test_store.py fails if a field is missed or misplaced."""
    return (*c[:CHARGE_STATE], end.state, end.images, end.amount, settled_at, c[_TAKEN], refunded)


class MemoryStore(Store):
    """State in this process's memory: fast, and gone when the process ends.

    Tasks and charges are kept packed (``packed``: tuples the cyclic GC does not scan) and
    handed out as `Task` and `Charge`.
    """

    def __init__(self, *, evict_at_most: int = EVICT_AT_MOST) -> None:
        super().__init__(evict_at_most=evict_at_most)
        self._tasks: OrderedDict[str, PackedTask] = OrderedDict()
        #: Where each task stands in submission order: pages of a listing find their start.
        self._order = SubmissionOrder()
        #: The schedules of the tasks polled last, unpacked.
        self._schedules = Schedules()
        #: The tasks by end time: expiry and eviction take the earliest, not every task.
        self._ends = EndIndex()
        #: The same for settling: held charges come due when their task ends.
        self._due = EndIndex()
        self._blobs: dict[str, bytes] = {}
        self._clock = 0.0
        #: The clock mode first claimed (`claim_clock`); reset keeps it.
        self._clock_mode: str | None = None
        self._faults: dict[str, FaultRule] = {}
        self._evaluations: dict[str, int] = {}
        self._hits: dict[str, int] = {}
        #: The request journal, numbered; a reset makes a new one (numbers from 1, new epoch).
        self._journal = Journal()
        #: The usage log in hold order; finished charges also in settlement order (to trim).
        self._charges: dict[str, PackedCharge] = {}
        self._finished: deque[str] = deque()
        #: The log's numbering (its pages) and the running sums of every charge (its totals).
        self._usage = UsageLog()
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
                evictions_due(len(self._tasks), cap, self.evict_at_most),
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
        self._usage.held(charge, self._charges)
        self._charges[task.task_id] = pack_charge(charge)
        self._order.add(task.task_id, self._tasks)
        packed = self._tasks[task.task_id] = pack_task(task)
        self._ends.push(packed, self._tasks)
        self._due.push(packed, self._tasks)
        if blob is not None:
            self._blobs[f"ref:{task.task_id}"] = blob
        return "placed"

    async def get_task(self, task_id: str) -> Task | None:
        packed = self._tasks.get(task_id)
        return None if packed is None else unpack_task(packed, self._schedules.of(packed))

    async def count_poll(
        self, task_id: str, owner: str | None = None, now: float | None = None
    ) -> Task | None:
        packed = self._tasks.get(task_id)
        # The packed task read in place, not through packed.py's helpers: a call each costs
        # a poll ~1% (make instructions).
        if packed is None or (owner is not None and packed[HEAD][OWNER] != owner):
            return None
        schedule = self._schedules.of(packed)
        head, fields, polls, token, finished_at = packed
        ends = False
        if schedule.steps is not None and finished_at is None:
            # per_poll: this poll may be the one that ends it (end_poll is a search: only here)
            end_poll = schedule.end_poll
            ends = end_poll is not None and polls + 1 >= end_poll
        if ends:
            finished_at = self._now(now)
        packed = self._tasks[task_id] = (head, fields, polls + 1, token, finished_at)
        if ends:
            self._moved(packed)
        return unpack_task(packed, schedule)

    async def force_end(self, task: Task, now: Now) -> Forced:
        packed = self._tasks.get(task.task_id)
        if packed is None:
            return "missing"
        current = unpack_task(packed)
        if has_ended(current, self._now(now)):
            return "ended"
        forced = dataclasses.replace(current, schedule=task.schedule, finished_at=task.finished_at)
        packed = self._tasks[task.task_id] = pack_task(forced)
        self._moved(packed)
        return forced

    def _moved(self, packed: PackedTask) -> None:
        """The task's end became known or moved: index it again."""
        self._ends.push(packed, self._tasks)
        self._due.push(packed, self._tasks)

    async def list_tasks(
        self, owner: str | None = None, *, newest: int | None = None
    ) -> list[Task]:
        newest = listed_at_most(newest)
        # Newest first, then reversed: only the tasks listed are unpacked (~5 µs each).
        kept = (t for t in reversed(self._tasks.values()) if owner is None or owner_of(t) == owner)
        listed = [unpack_task(t) for t in islice(kept, newest)]
        listed.reverse()
        return listed

    async def task_page(self, after: Position | None, count: int) -> TaskPage | None:
        after, count = paged(after, count)
        found = self._order.page(after, count, self._tasks)
        if found is None:
            return None
        ids, last, more = found
        return TaskPage([unpack_task(self._tasks[i]) for i in ids], last, more)

    async def count_tasks(self) -> int:
        return len(self._tasks)

    async def expire(self, finished_before: float, now: Now) -> Expiry:
        at = self._now(now)
        removed = self._ends.pop_ended(self._tasks, finished_before, None, self._remover(at))
        return Expiry(removed, len(self._tasks))

    def _remover(self, at: float) -> Any:
        def remove(packed: PackedTask) -> bool:
            """Remove the task if it has ended by ``at`` (the index's order is approximate at
            the last bit: a sum of floats), settling its charge."""
            task = unpack_task(packed)
            if not has_ended(task, at):
                return False
            del self._tasks[task.task_id]
            self._order.removed(task.task_id, self._tasks)
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

    async def claim_clock(self, mode: str) -> str:
        # Never kept past this process; still one mode, for emulators given this one store.
        if self._clock_mode is None:
            self._clock_mode = mode
        return self._clock_mode

    async def add_fault(self, rule: FaultRule) -> None:
        self._faults.pop(rule.id, None)
        self._faults[rule.id] = rule
        self._evaluations[rule.id] = 0
        self._hits[rule.id] = 0

    async def list_faults(self) -> list[FaultRule]:
        return list(self._faults.values())

    async def remove_fault(self, rule_id: str, serial: str | None = None) -> int | None:
        rule = self._faults.get(rule_id)
        if serial is not None and (rule is None or rule.serial != serial):
            return None
        self._faults.pop(rule_id, None)
        self._evaluations.pop(rule_id, None)
        hits = self._hits.pop(rule_id, 0)
        return None if rule is None else hits

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

    async def fault_rule_hits(self, rule_id: str) -> tuple[str, int] | None:
        rule = self._faults.get(rule_id)
        return None if rule is None else (rule.serial, self._hits.get(rule_id, 0))

    async def append_journal(self, entry: dict[str, Any], limit: int) -> None:
        # The entry is the caller's to give away (Store.append_journal): numbered in place.
        self._journal.add(entry, limit)

    async def append_pending(self, pending: PendingEntry, limit: int) -> None:
        # Built when read: most entries are trimmed unread, and the request is not kept
        # waiting for a dict nobody may ask for (docs/profile.md).
        self._journal.add_pending(pending, limit)

    async def journal_page(self, after: Position | None, count: int) -> JournalPage | None:
        # Found by arithmetic on the numbers (emulator/stores/memory/journal.py): a page costs
        # its own entries however many are kept.
        return self._journal.page(*paged(after, count))

    async def journal_tail(self, count: int) -> list[dict[str, Any]]:
        return self._journal.tail(paged(None, count)[1])

    async def clear_journal(self, *, mark: bool = True) -> None:
        self._journal.clear(mark)

    # -- billing -------------------------------------------------------------------------
    async def settle(self, task_id: str, images: int, settled_at: float) -> bool:
        return self._settle(task_id, images, settled_at)

    def _settle(self, task_id: str, images: int, settled_at: float) -> bool:
        current = self._charges.get(task_id)
        if current is None or current[CHARGE_STATE] != "held":
            return False
        charge = unpack_charge(current)
        end = settlement(charge, images)
        owner = current[CHARGE_OWNER]
        balance = self._balances.get(owner)
        refunded = 0 if balance is None else end.back
        if balance is not None:
            self._balances[owner] = (balance[0], balance[1] + refunded)
        self._usage.settled(charge, end, refunded)
        self._charges[task_id] = _settled(current, end, settled_at, refunded)
        self._finished.append(task_id)
        self._trim()
        return True

    def _trim(self) -> None:
        limit = self.usage_log_limit
        while limit is not None and len(self._finished) > limit:
            task_id = self._finished.popleft()
            del self._charges[task_id]
            self._usage.trimmed(task_id, self._charges)

    async def settle_due(self, now: Now) -> int:
        return self._settle_due(self._now(now))

    def _settle_due(self, at: float) -> int:
        settled = 0

        def take(packed: PackedTask) -> bool:
            nonlocal settled
            charge = self._charges.get(id_of(packed))
            if charge is None or charge[CHARGE_STATE] != "held":
                return True  # settled already: the entry is spent
            task = unpack_task(packed)
            if not has_ended(task, at):
                return False
            settled += self._settle(task.task_id, images_returned(task), ended_at(task))
            return True

        self._due.pop_ended(self._tasks, at, None, take)
        return settled

    async def charge_page(self, after: Position | None, count: int) -> ChargePage | None:
        after, count = paged(after, count)
        found = self._usage.page(after, count, self._charges)
        if found is None:
            return None
        ids, last, more = found
        return ChargePage([unpack_charge(self._charges[i]) for i in ids], last, more)

    async def charge_tail(self, count: int) -> list[Charge]:
        count = paged(None, count)[1]
        # The dict is in hold order (a settlement replaces a value in place): its last keys.
        newest = list(islice(reversed(self._charges.values()), count))
        return [unpack_charge(c) for c in reversed(newest)]

    async def get_charge(self, task_id: str) -> Charge | None:
        packed = self._charges.get(task_id)
        return None if packed is None else unpack_charge(packed)

    async def usage_sums(self) -> list[Sums]:
        return self._usage.sums()

    async def set_balance(
        self, owner: str, label: str, amount: int | None, now: Now = None, most: int = 0
    ) -> bool:
        balances = self._balances
        if amount is not None and 0 < most <= len(balances) and owner not in balances:
            return False
        self._settle_due(self._now(now))
        if amount is None:
            balances.pop(owner, None)
        else:
            balances[owner] = (label, amount)
        return True

    async def list_balances(self) -> dict[str, tuple[str, int]]:
        return dict(self._balances)

    async def reset(self) -> None:
        self._charges.clear()
        self._finished.clear()
        self._usage.clear()
        self._balances.clear()
        self._tasks.clear()
        self._order.clear()
        self._schedules.clear()
        self._ends.clear()
        self._due.clear()
        self._blobs.clear()
        self._clock = 0.0
        await self.clear_faults()
        self._journal = Journal()
