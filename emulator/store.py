"""Where state lives: one small async interface, with backends behind it.

Every operation that must be atomic across workers is one named method here (inserting a task
under a fresh id, counting a poll, moving the manual clock), so a shared backend can implement
each as one atomic step. The in-memory backend is the default; it is atomic because the event
loop runs one coroutine at a time and none of its methods awaits.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from typing import Any

from .billing import Charge, ChargeState
from .faults import FaultRule
from .tasks import Task


class Store(ABC):
    """The state of one emulator."""

    @abstractmethod
    async def insert_task(self, task: Task) -> bool:
        """Store a new task; False (and nothing stored) if its id is taken."""

    @abstractmethod
    async def get_task(self, task_id: str) -> Task | None:
        """The task, or None."""

    @abstractmethod
    async def count_poll(self, task_id: str) -> Task | None:
        """Atomically add one to the task's poll counter; the updated task, or None."""

    @abstractmethod
    async def replace_task(self, task: Task) -> bool:
        """Overwrite an existing task (e.g. a forced outcome); False if it does not exist."""

    @abstractmethod
    async def remove_task(self, task_id: str) -> bool:
        """Forget a task and its blobs; False if it did not exist."""

    @abstractmethod
    async def list_tasks(self, owner: str | None = None) -> list[Task]:
        """Tasks in submission order, optionally only one owner's."""

    @abstractmethod
    async def put_blob(self, key: str, data: bytes) -> None:
        """Keep bytes (e.g. a reference picture thumbnail) under ``key``."""

    @abstractmethod
    async def get_blob(self, key: str) -> bytes | None:
        """Bytes stored under ``key``, or None."""

    @abstractmethod
    async def clock_now(self) -> float:
        """Virtual time of the manual clock."""

    @abstractmethod
    async def advance_clock(self, seconds: float) -> float:
        """Atomically move the manual clock forward; the new time."""

    # -- fault rules ---------------------------------------------------------------------
    @abstractmethod
    async def add_fault(self, rule: FaultRule) -> None:
        """Append a rule (replacing one with the same id), hit counters at zero."""

    @abstractmethod
    async def list_faults(self) -> list[FaultRule]:
        """Rules in order."""

    @abstractmethod
    async def remove_fault(self, rule_id: str) -> bool:
        """Delete one rule; False if there was none."""

    @abstractmethod
    async def clear_faults(self) -> None:
        """Delete every rule."""

    @abstractmethod
    async def count_fault_evaluation(self, rule_id: str) -> int:
        """Atomically count one more match of the rule; the count (1 for the first)."""

    @abstractmethod
    async def claim_fault(self, rule_id: str, times: int | None) -> bool:
        """Atomically take one hit if fewer than ``times`` were taken; True if taken."""

    @abstractmethod
    async def fault_hits(self) -> dict[str, int]:
        """Hits taken per rule id."""

    # -- request journal ------------------------------------------------------------------
    @abstractmethod
    async def append_journal(self, entry: dict[str, Any], limit: int) -> int:
        """Record a request; keep only the newest ``limit``; return the entry's sequence number."""

    @abstractmethod
    async def list_journal(self) -> list[dict[str, Any]]:
        """Journal entries, oldest first."""

    @abstractmethod
    async def clear_journal(self) -> None:
        """Forget the journal."""

    # -- billing --------------------------------------------------------------------------
    @abstractmethod
    async def hold(self, charge: Charge) -> bool:
        """Atomically: if the owner has a balance below ``charge.held``, False and nothing
        changes; otherwise deduct it (when a balance is set) and record the charge."""

    @abstractmethod
    async def settle(
        self, task_id: str, state: ChargeState, images: int, amount: int, settled_at: float
    ) -> bool:
        """Atomically end a still-held charge (settled or released), giving back
        ``held - amount`` to the owner's balance; False if it was no longer held."""

    @abstractmethod
    async def list_charges(self, owner: str | None = None) -> list[Charge]:
        """The usage log, oldest first."""

    @abstractmethod
    async def set_balance(self, owner: str, label: str, amount: int | None) -> None:
        """Set (or with None remove: unlimited) an owner's balance."""

    @abstractmethod
    async def list_balances(self) -> dict[str, tuple[str, int]]:
        """owner -> (masked key, balance)."""

    @abstractmethod
    async def reset(self) -> None:
        """Forget everything: tasks, blobs, faults, journal, usage, balances, the clock."""

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release connections; the default backend has none."""


class MemoryStore(Store):
    """State in this process's memory: fast, and gone when the process ends."""

    def __init__(self) -> None:
        self._tasks: OrderedDict[str, Task] = OrderedDict()
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
        return True

    async def get_task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    async def count_poll(self, task_id: str) -> Task | None:
        task = self._tasks.get(task_id)
        if task is None:
            return None
        task = dataclasses.replace(task, polls=task.polls + 1)
        self._tasks[task_id] = task
        return task

    async def replace_task(self, task: Task) -> bool:
        if task.task_id not in self._tasks:
            return False
        self._tasks[task.task_id] = task
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

    async def reset(self) -> None:
        self._charges.clear()
        self._balances.clear()
        self._tasks.clear()
        self._blobs.clear()
        self._clock = 0.0
        await self.clear_faults()
        await self.clear_journal()
        self._journal_seq = 0


def open_store(url: str) -> Store:
    """The backend named by ``url``; only ``memory`` exists so far."""
    if url in ("memory", "memory://"):
        return MemoryStore()
    raise ValueError(f"store {url!r} is not supported; use 'memory'")
