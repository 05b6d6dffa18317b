"""The default backend: state in this process's memory.

It is atomic because the event loop runs one coroutine at a time and none of its methods
awaits.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from typing import Any

from .billing import Charge, ChargeState
from .end_index import EndIndex
from .faults import FaultRule
from .store import Expiry, Store
from .tasks import Task


class MemoryStore(Store):
    """State in this process's memory: fast, and gone when the process ends."""

    def __init__(self) -> None:
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        #: The tasks by end time: ``expire`` takes the earliest instead of reading every task.
        self._ends = EndIndex()
        self._blobs: dict[str, bytes] = {}
        self._clock = 0.0
        self._faults: dict[str, FaultRule] = {}
        self._evaluations: dict[str, int] = {}
        self._hits: dict[str, int] = {}
        self._journal: deque[dict[str, Any]] = deque()
        self._journal_seq = 0
        self._charges: dict[str, Charge] = {}
        self._balances: dict[str, tuple[str, int]] = {}

    async def insert_task(self, task: Task) -> bool:
        if task.task_id in self._tasks:
            return False
        self._tasks[task.task_id] = task
        self._ends.add(task, self._tasks)
        return True

    async def get_task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    async def count_poll(self, task_id: str, owner: str | None = None) -> Task | None:
        task = self._tasks.get(task_id)
        if task is None or (owner is not None and task.owner != owner):
            return None
        task = dataclasses.replace(task, polls=task.polls + 1)
        self._tasks[task_id] = task
        return task

    async def replace_task(self, task: Task) -> bool:
        old = self._tasks.get(task.task_id)
        if old is None:
            return False
        self._tasks[task.task_id] = task
        self._ends.moved(old, task)
        return True

    async def remove_task(self, task_id: str) -> bool:
        self._blobs.pop(f"ref:{task_id}", None)
        return self._tasks.pop(task_id, None) is not None

    async def list_tasks(self, owner: str | None = None) -> list[Task]:
        tasks = self._tasks.values()
        return [t for t in tasks if owner is None or t.owner == owner]

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

    async def append_journal(self, entry: dict[str, Any], limit: int) -> int:
        self._journal_seq += 1
        self._journal.append(entry | {"seq": self._journal_seq})
        while len(self._journal) > limit:
            self._journal.popleft()
        return self._journal_seq

    async def log_request(self, entry: dict[str, Any], limit: int) -> None:
        # The entry is the request path's own fresh dict: numbered in place, not copied.
        self._journal_seq += 1
        entry["seq"] = self._journal_seq
        self._journal.append(entry)
        while len(self._journal) > limit:
            self._journal.popleft()

    async def list_journal(self) -> list[dict[str, Any]]:
        return list(self._journal)

    async def clear_journal(self) -> None:
        self._journal.clear()

    async def hold(self, charge: Charge) -> bool:
        balance = self._balances.get(charge.owner)
        if balance is not None:
            label, amount = balance
            if amount < charge.held:
                return False
            self._balances[charge.owner] = (label, amount - charge.held)
        self._charges[charge.task_id] = charge
        return True

    async def settle(
        self, task_id: str, state: ChargeState, images: int, amount: int, settled_at: float
    ) -> bool:
        current = self._charges.get(task_id)
        if current is None or current.state != "held":
            return False
        self._charges[task_id] = dataclasses.replace(
            current, state=state, images=images, amount=amount, settled_at=settled_at
        )
        balance = self._balances.get(current.owner)
        if balance is not None:
            self._balances[current.owner] = (balance[0], balance[1] + current.held - amount)
        return True

    async def list_charges(self, owner: str | None = None) -> list[Charge]:
        return [c for c in self._charges.values() if owner is None or c.owner == owner]

    async def set_balance(self, owner: str, label: str, amount: int | None) -> None:
        if amount is None:
            self._balances.pop(owner, None)
        else:
            self._balances[owner] = (label, amount)

    async def list_balances(self) -> dict[str, tuple[str, int]]:
        return dict(self._balances)

    async def expire(self, finished_before: float, now: float, keep: int | None) -> Expiry:
        # Earliest ends first from the heap: the same tasks, in the same order, as the default
        # (expired ones in submission order, then the cap's earliest ends, ties by submission).
        expired = self._ends.pop_ended(self._tasks, finished_before, None, self._forget)
        expired.sort(key=lambda entry: entry[0])
        removed = [task for _, task in expired]
        if keep is not None and len(self._tasks) > keep:
            excess = len(self._tasks) - keep
            removed += [t for _, t in self._ends.pop_ended(self._tasks, now, excess, self._forget)]
        return Expiry(removed, len(self._tasks))

    def _forget(self, task_id: str) -> None:
        del self._tasks[task_id]
        self._blobs.pop(f"ref:{task_id}", None)

    async def reset(self) -> None:
        self._charges.clear()
        self._balances.clear()
        self._tasks.clear()
        self._ends.clear()
        self._blobs.clear()
        self._clock = 0.0
        await self.clear_faults()
        await self.clear_journal()
        self._journal_seq = 0
