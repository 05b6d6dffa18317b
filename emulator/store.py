"""Where state lives: one small async interface, with backends behind it.

Every operation that must be atomic across workers is one named method here (inserting a task
under a fresh id, counting a poll, moving the manual clock), so a shared backend can implement
each as one atomic step. The in-memory backend is the default; it is atomic because the event
loop runs one coroutine at a time and none of its methods awaits.
"""

from __future__ import annotations

import contextlib
import dataclasses
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .billing import Charge, ChargeState
from .end_index import EndIndex
from .end_index import ended_at as ended_at  # where the other stores and expiry find it
from .faults import FaultRule
from .tasks import Task

Placed = Literal["placed", "taken", "refused"]


@dataclass(frozen=True, slots=True)
class Expiry:
    """What ``Store.expire`` did: the tasks it removed, and how many tasks remain."""

    removed: list[Task]
    remaining: int


class Store(ABC):
    """The state of one emulator."""

    @abstractmethod
    async def insert_task(self, task: Task) -> bool:
        """Store a new task; False (and nothing stored) if its id is taken."""

    @abstractmethod
    async def get_task(self, task_id: str) -> Task | None:
        """The task, or None."""

    @abstractmethod
    async def count_poll(self, task_id: str, owner: str | None = None) -> Task | None:
        """Atomically add one to the task's poll counter; the updated task, or None.

        With ``owner``, only that owner's poll counts: None (and nothing counted) when the task
        belongs to another key, whose polls must not move it (D-1).
        """

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

    async def ping(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Raise ``StoreUnavailable`` when the backend cannot answer (a local one always can)."""

    async def claim_id_stream(self) -> int:
        """A number no other emulator sharing this store has got: 0 for the first (and for a
        store of one's own). Task ids are drawn from a stream per number, so processes sharing
        a seed and a store never draw the same ids."""
        return 0

    # -- cheaper paths for a networked backend (defaults: the plain operations) -----------
    def request_scope(self) -> AbstractAsyncContextManager[object]:
        """Around one HTTP request: a networked backend may read the rules, the clock and the
        task's charge state once, with the task, and answer the request's later reads from
        that (briefly valid) snapshot. A local backend needs nothing."""
        return contextlib.nullcontext()

    async def insert_held(self, task: Task, charge: Charge, blob: bytes | None) -> Placed:
        """``insert_task``, ``hold`` and ``put_blob("ref:<id>", blob)`` as one step: the task is
        kept only if its charge is held ("refused" otherwise; "taken": the id is in use)."""
        if not await self.insert_task(task):
            return "taken"
        if not await self.hold(charge):
            await self.remove_task(task.task_id)
            return "refused"
        if blob is not None:
            await self.put_blob(f"ref:{task.task_id}", blob)
        return "placed"

    async def log_request(self, entry: dict[str, Any], limit: int) -> None:
        """``append_journal`` for the request path, where a backend may write behind."""
        await self.append_journal(entry, limit)

    # -- bounded size (not abstract: a backend may rely on this slow default) -------------
    async def expire(self, finished_before: float, now: float, keep: int | None) -> Expiry:
        """Remove finished tasks (and their blobs) to bound the store.

        First every task that ended (``ended_at``) at or before ``finished_before``; then, if
        more than ``keep`` tasks remain (None: no cap), tasks that ended by ``now``, earliest
        end first, until ``keep`` remain or no ended task is left. Unfinished tasks are never
        removed. Charges are kept: the usage log lists every charge.

        This default reads every task; backends override it with an indexed query.
        """
        tasks = await self.list_tasks()
        doomed = {t.task_id: t for t in tasks if ended_at(t) <= finished_before}
        excess = len(tasks) - len(doomed) - keep if keep is not None else 0
        if excess > 0:
            ended = sorted(
                (t for t in tasks if t.task_id not in doomed and ended_at(t) <= now), key=ended_at
            )
            doomed.update((t.task_id, t) for t in ended[:excess])
        removed = [t for t in doomed.values() if await self.remove_task(t.task_id)]
        return Expiry(removed, len(tasks) - len(removed))


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


#: What the ``store`` setting accepts (checked at start-up, see config.py).
STORE_URL_FORMS = "'memory', 'sqlite:///path/to/file.db' or 'redis://host:port/db'"


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite://`` URL: ``sqlite:///abs/file.db`` or ``sqlite://rel/file.db``."""
    path = url.removeprefix("sqlite://")
    if not url.startswith("sqlite://") or not path or path.endswith("/"):
        raise ValueError(f"store {url!r} is not a SQLite URL; use 'sqlite:///path/to/file.db'")
    return Path(path)


def open_store(url: str, *, prefix: str = "emulator") -> Store:
    """The backend named by ``url`` (``prefix`` namespaces keys in a shared server).

    Raises ValueError naming the URL when it is not supported or the store cannot be opened.
    """
    if url in ("memory", "memory://"):
        return MemoryStore()
    if url.startswith("sqlite://"):
        from .sqlite_store import SqliteStore  # only loaded when asked for

        return SqliteStore(sqlite_path(url))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_store import RedisStore, check_url  # only loaded when asked for

        check_url(url)
        return RedisStore(url, prefix)
    raise ValueError(f"store {url!r} is not supported; use {STORE_URL_FORMS}")
