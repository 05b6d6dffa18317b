"""Where state lives: one small async interface, with backends behind it.

Every operation that must be atomic across workers is one named method here (inserting a task
under a fresh id, counting a poll, moving the manual clock), so a shared backend can implement
each as one atomic step. The in-memory backend (``memory_store``) is the default.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from .billing import Charge, ChargeState
from .end_index import ended_at as ended_at  # where the other stores and expiry find it
from .faults import FaultRule
from .tasks import Task

if TYPE_CHECKING:  # re-exported lazily by __getattr__: memory_store imports this module
    from .memory_store import MemoryStore as MemoryStore

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


#: What the ``store`` setting accepts (checked at start-up, see config.py).
STORE_URL_FORMS = "'memory', 'sqlite:///path/to/file.db' or 'redis://host:port/db'"


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite://`` URL: ``sqlite:///abs/file.db`` or ``sqlite://rel/file.db``."""
    path = url.removeprefix("sqlite://")
    if not url.startswith("sqlite://") or not path or path.endswith("/"):
        raise ValueError(f"store {url!r} is not a SQLite URL; use 'sqlite:///path/to/file.db'")
    return Path(path)


def masked_url(url: str) -> str:
    """A store URL fit to show (messages, ``GET /_emulator/config``): any password masked."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def open_store(url: str, *, prefix: str = "emulator") -> Store:
    """The backend named by ``url`` (``prefix`` namespaces keys in a shared server).

    Raises ValueError naming the URL when it is not supported or the store cannot be opened.
    """
    if url in ("memory", "memory://"):
        from .memory_store import MemoryStore  # here, not at the top: it imports this module

        return MemoryStore()
    if url.startswith("sqlite://"):
        from .sqlite_store import SqliteStore  # only loaded when asked for

        return SqliteStore(sqlite_path(url))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_store import RedisStore, check_url  # only loaded when asked for

        check_url(url)
        return RedisStore(url, prefix)
    raise ValueError(f"store {url!r} is not supported; use {STORE_URL_FORMS}")


def __getattr__(name: str) -> Any:
    """``from emulator.store import MemoryStore`` still works, without an import cycle."""
    if name == "MemoryStore":
        from .memory_store import MemoryStore

        return MemoryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
