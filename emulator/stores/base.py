"""Where state lives: one small async interface, with backends behind it.

Every operation that decides on stored data is one method here, and each backend runs each
such method as one atomic step: nothing another request (or another worker on a shared store)
does can land between its reads and its writes. The method docs say what each promises;
docs/invariants.md lists the invariants they add up to. The in-memory backend
(``emulator.stores.memory``) is the default; ``emulator.stores.factory`` opens the one a
setting names.

Times are clock seconds. A ``now`` of None means the manual clock this store keeps, read
inside the step itself, so a decision never rests on a clock read before a concurrent move.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal

from ..core.billing import Charge, Sums
from ..core.faults import FaultRule
from ..core.journal import PendingEntry
from ..core.tasks import Task
from .pages import (  # here too: where the stores and their callers have always found them
    ChargePage,
    JournalPage,
    Position,
    TaskPage,
)

#: What a submission's step did: placed; "taken": the id is in use; "refused": the balance
#: cannot cover the hold; "full": ``cap`` tasks are stored and none of them has ended.
Placed = Literal["placed", "taken", "refused", "full"]
#: A forced outcome's step: the task as forced, or why not ("missing", "ended").
Forced = Task | Literal["missing", "ended"]
#: Clock time for a step; None: the manual clock kept in the store, read inside the step.
Now = float | None


@dataclass(frozen=True, slots=True)
class Expiry:
    """What ``Store.expire`` did: how many tasks it removed, and how many remain."""

    removed: int
    remaining: int


#: The most tasks one submission's step evicts from a full store, by default (each store takes
#: its own bound at construction: ``evict_at_most``). Each evicted task is settled in that step
#: (~7-9 µs each in memory): a tenth of the default max_tasks (10,000) held the loop 100-300 ms,
#: the p99 of served submissions at the cap (docs/profile.md, round 6).
EVICT_AT_MOST = 1_000


def room_after_eviction(cap: int, evict_at_most: int) -> int:
    """How many tasks a full store keeps after evicting: a tenth of ``cap`` below it (at least
    one, at most ``evict_at_most``), so a full store does not evict at every submission, nor
    long in one."""
    return cap - max(1, min(cap // 10, evict_at_most))


def evictions_due(stored: int, cap: int, evict_at_most: int) -> int:
    """How many ended tasks a store holding ``stored`` (at least ``cap``) evicts in one step:
    down to `room_after_eviction`, but never more than ``evict_at_most``, even above a cap
    lowered at run time (100,000 stored and a new cap of 1,000 would otherwise evict 99,100 in
    one step: a loop held for a second, or a Redis script outliving its caller's timeout). Such
    a store sheds ``evict_at_most`` a submission, refusing them as full until it is below the
    cap."""
    return min(stored - room_after_eviction(cap, evict_at_most), evict_at_most)


class Store(ABC):
    """The state of one emulator.

    Atomic means: one step, all or nothing, and no other operation on the same state (from this
    process or another sharing the store) observed or interleaved between its reads and writes.
    """

    #: Finished charges the usage log keeps, newest settlements last (None: every one). Older
    #: ones leave the log; they still count in ``usage_sums``. Held charges always stay.
    #: The emulator sets it from the ``usage_log_limit`` setting.
    usage_log_limit: int | None = None
    #: The most tasks one submission's step evicts from a full store (``room_after_eviction``),
    #: given at construction. No class default: a backend that skipped ``Store.__init__``
    #: fails loudly at its first eviction rather than quietly evicting by another bound.
    evict_at_most: int

    def __init__(self, *, evict_at_most: int = EVICT_AT_MOST) -> None:
        """Raises ValueError naming ``evict_at_most`` unless it is an integer of at least 1 (a
        bound of 0 would leave a full store of ended tasks full)."""
        if not isinstance(evict_at_most, int) or isinstance(evict_at_most, bool):
            raise ValueError(f"evict_at_most must be an integer, not {evict_at_most!r}")
        if evict_at_most < 1:
            raise ValueError(f"evict_at_most must be at least 1, not {evict_at_most}")
        self.evict_at_most = evict_at_most

    # -- tasks and their charges -----------------------------------------------------------
    @abstractmethod
    async def insert_held(
        self, task: Task, charge: Charge, blob: bytes | None, *, cap: int, now: Now
    ) -> Placed:
        """A submission, atomically: store ``task``, hold ``charge`` and keep ``blob`` (the
        reference picture, ``ref:<id>``), or change nothing and say why.

        Order of checks: the id must be free ("taken"); with ``cap`` > 0 and ``cap`` tasks
        stored, tasks that have ended by ``now`` are evicted first (earliest end first, down to
        ``room_after_eviction(cap, self.evict_at_most)``, at most ``evict_at_most`` in one
        step: `evictions_due`; each settled in the same step) and if ``cap`` remain it is
        "full"; a key with a balance below ``charge.held`` first settles
        its holds that are due by ``now``, and is "refused" if still short. A placed hold takes
        ``charge.held`` from the key's balance when it has one (recorded as ``taken``)."""

    @abstractmethod
    async def get_task(self, task_id: str) -> Task | None:
        """The task, or None. A read: safe to repeat."""

    @abstractmethod
    async def count_poll(
        self, task_id: str, owner: str | None = None, now: float | None = None
    ) -> Task | None:
        """Atomically add one to the task's poll counter; the updated task, or None.

        With ``owner``, only that owner's poll counts: None (and nothing counted) when the task
        belongs to another key, whose polls must not move it (D-1). On the per_poll clock the
        poll that ends the task records ``now`` as its end (``finished_at``), in the same step.
        """

    @abstractmethod
    async def force_end(self, task: Task, now: Now) -> Forced:
        """Atomically end a running task early: if the stored task has not ended by ``now``
        (on its own clock: polls on per_poll), take ``task.schedule`` and ``task.finished_at``
        from ``task`` (keeping the stored poll count) and return the result; otherwise change
        nothing and say "ended" (terminal states are final) or "missing"."""

    @abstractmethod
    async def list_tasks(
        self, owner: str | None = None, *, newest: int | None = None
    ) -> list[Task]:
        """Tasks in submission order, optionally only one owner's; with ``newest``, only the
        last ``newest`` of those (checked by `listed_at_most`; a full store holds 100,000
        tasks: the dashboard reads the few it shows, not all). A read."""

    @abstractmethod
    async def task_page(self, after: Position | None, count: int) -> TaskPage | None:
        """At most ``count`` stored tasks in submission order: the first ones, or those
        numbered above ``after``'s number (a `TaskPage`'s ``last``), whether or not the task
        that had it is still stored (numbers are never given twice: expiry, eviction and
        ``reset`` remove tasks, never renumber them). None when ``after`` is of another epoch
        than this store's numbering (it started again: a new memory store, another SQLite
        file, a wiped Redis), where going on after its number would skip tasks. ``last``
        carries this store's epoch. Arguments checked by `paged`.

        A read, one consistent view: the check of the epoch and the page are one step
        (memory: no await; SQLite: one read transaction; Redis: one script, which makes the
        epoch if its key is missing). Its cost is the page's, not the store's: a page after
        the 99,000th of 100,000 tasks is read without reading the 99,000 (docs/persistence.md
        says how each backend finds it)."""

    @abstractmethod
    async def count_tasks(self) -> int:
        """How many tasks are stored. A read."""

    @abstractmethod
    async def expire(self, finished_before: float, now: Now) -> Expiry:
        """Atomically remove every task that ended (``ended_at``) at or before
        ``finished_before`` and has ended by ``now``, with its reference picture, settling its
        held charge in the same step. Unfinished tasks are never removed."""

    @abstractmethod
    async def put_blob(self, key: str, data: bytes) -> None:
        """Keep bytes (e.g. a reference picture thumbnail) under ``key``. Idempotent."""

    @abstractmethod
    async def get_blob(self, key: str) -> bytes | None:
        """Bytes stored under ``key``, or None. A read."""

    # -- the clock ---------------------------------------------------------------------------
    @abstractmethod
    async def clock_now(self) -> float:
        """Virtual time of the manual clock (0.0 until advanced). A read."""

    @abstractmethod
    async def advance_clock(self, seconds: float) -> float:
        """Atomically move the manual clock forward; the new time."""

    @abstractmethod
    async def claim_clock(self, mode: str) -> str:
        """Atomically, the ``clock`` mode this store is kept with: ``mode`` if it had none
        (kept from then on), else the one it has, unchanged. Claims racing on a new store
        (workers starting together) all get the one that came first. A kept task's times are
        its clock's (wall seconds, manual seconds or polls), which another clock would
        misread: an emulator whose mode differs refuses to start (usecases/startup.py).
        ``reset`` keeps the mode: the emulators sharing the store still run on it."""

    # -- fault rules ---------------------------------------------------------------------
    @abstractmethod
    async def add_fault(self, rule: FaultRule) -> None:
        """Atomically append a rule (replacing one with the same id), hit counters at zero."""

    @abstractmethod
    async def list_faults(self) -> list[FaultRule]:
        """Rules in the order added. A read (one consistent list, never half of an add)."""

    @abstractmethod
    async def remove_fault(self, rule_id: str, serial: str | None = None) -> int | None:
        """Atomically delete one rule and its counters, given ``serial`` only if the rule
        installed under ``rule_id`` is that installation (`FaultRule.serial`); the hits it had
        taken (read in the same step), or None if there was no such rule (nothing removed)."""

    @abstractmethod
    async def clear_faults(self) -> None:
        """Atomically delete every rule and counter."""

    @abstractmethod
    async def count_fault_evaluation(self, rule_id: str) -> int:
        """Atomically count one more match of the rule; the count (1 for the first)."""

    @abstractmethod
    async def claim_fault(self, rule_id: str, times: int | None) -> bool:
        """Atomically take one hit if fewer than ``times`` were taken; True if taken."""

    @abstractmethod
    async def fault_hits(self) -> dict[str, int]:
        """Hits taken per rule id (rules removed since keep no entry). A read."""

    @abstractmethod
    async def fault_rule_hits(self, rule_id: str) -> tuple[str, int] | None:
        """The ``serial`` of the rule installed under ``rule_id`` and the hits it took, read
        in one step (never one rule's serial with another's hits); None if there is none. A
        read."""

    # -- request journal ------------------------------------------------------------------
    @abstractmethod
    async def append_journal(self, entry: dict[str, Any], limit: int) -> None:
        """Record a request: atomically, when the entry is written, number it (``seq``, the
        next of a sequence that only ``reset`` restarts) and keep only the newest ``limit``.

        The store owns ``entry`` from here: it may add ``seq`` to that very dict (the request
        path builds a fresh one; a copy per request is what this saves). A networked backend
        may write behind, in arrival order, never raising (the journal is diagnostics: an outage
        must not fail the request it records); ``journal_page``, ``journal_tail`` and
        ``clear_journal`` come after every entry this store appended before them."""

    async def append_pending(self, pending: PendingEntry, limit: int) -> None:
        """``append_journal(pending.build(), limit)``, which is what this default does: a
        backend that serialises entries gains nothing by waiting. The memory store keeps
        ``pending`` as it is and builds the entry when the journal is read (most never are)."""
        await self.append_journal(pending.build(), limit)

    @abstractmethod
    async def journal_page(self, after: Position | None, count: int) -> JournalPage | None:
        """At most ``count`` kept journal entries in arrival order: the oldest kept, or those
        numbered (``seq``) above ``after``'s number, whether or not that entry is still kept
        (the bound drops the oldest, ``clear_journal`` all: neither renumbers). None when
        ``after`` is of another epoch than the journal numbering's: ``reset`` starts the
        numbering again at 1 under a new epoch (so does a new memory store, another SQLite
        file, a wiped Redis), and going on after its number would skip entries. ``last``
        carries the epoch. Arguments checked by `paged`.

        A read after every entry this store appended before it: a backend that writes behind
        writes its queue first. Entries other workers sharing the store still hold in their
        own queues are numbered when written, above every entry written before: a later page
        lists them, so a walk by pages neither skips nor repeats a kept entry. The epoch's
        check and the page are one step. Its cost is the page's, not the journal's
        (``journal_limit`` may be 10^6): the journal is read by pages (or its tail) only,
        never whole. The page's ``dropped`` is read in the same step (`pages.dropped_before`):
        how many entries the bound dropped between the cursor (none: the last clear) and the
        page's first, so a reader can tell a whole journal from one that lost entries."""

    @abstractmethod
    async def journal_tail(self, count: int) -> list[dict[str, Any]]:
        """The newest ``count`` kept entries (fewer if fewer are kept), oldest first, as
        `journal_page` reads them (after this store's queued entries; at the cost of
        ``count``). ``count`` checked by `paged`."""

    @abstractmethod
    async def clear_journal(self, *, mark: bool = True) -> None:
        """Atomically forget the journal (numbering goes on, epoch and all), and with ``mark``
        note the newest number given so far: entries up to it were cleared, not dropped by
        the bound (`JournalPage.dropped`; a ``reset`` notes 0). Without ``mark`` the note stays
        where it was, so the entries forgotten count as dropped: the emptying ``journal_limit``
        0 does (`JournalKeeper.keep_none`) is the bound's, not a reader's clear. With ``mark``
        it also starts `journal_lost` again (entries lost before a clear are cleared too)."""

    def journal_lost(self) -> int:
        """How many journal entries this store object was given (``append_journal``,
        ``append_pending``) and lost without numbering them since it was made, last reset, or
        last cleared with ``mark``: a backend writing behind loses what an outage stops it
        writing (Redis: `JournalWriter`). Never numbered, so no page's ``dropped`` counts them:
        only this count tells a reader the journal misses them. Per store object (one per
        worker process): another worker's losses are its own. No I/O. This default: 0 (a store
        that writes at once raises instead of losing an entry)."""
        return 0

    # -- billing --------------------------------------------------------------------------
    @abstractmethod
    async def settle(self, task_id: str, images: int, settled_at: float) -> bool:
        """Atomically end a still-held charge whose task ended with ``images`` (0: failed):
        paid ``billing.settlement`` of it, its unpaid taken part back to the owner's balance
        if the owner has one now; False (nothing changes) if it was no longer held. The caller
        has seen the task end."""

    @abstractmethod
    async def settle_due(self, now: Now) -> int:
        """Atomically settle every held charge whose task has ended by ``now`` (on its own
        clock), each as ``settle`` would; how many. Costs what is due, not the log's size."""

    @abstractmethod
    async def charge_page(self, after: Position | None, count: int) -> ChargePage | None:
        """At most ``count`` charges of the usage log (every held charge and the newest
        ``usage_log_limit`` finished ones; a settlement moves a charge whole) in hold order:
        the first ones, or those numbered above ``after``'s number (a `ChargePage`'s
        ``last``), whether or not the charge that had it is still listed. A charge's number is
        its own, given in the step that holds it (rising, never given twice by one numbering,
        also not after ``reset``), and kept while it stays in the log, whatever becomes of its
        task (evicted, expired): so a walk goes on past charges trimmed between its pages,
        and never repeats or skips one still listed (a settlement changes a charge, never its
        number). None when ``after`` is of another epoch (the numbering started again: a new
        memory store, another SQLite file, a wiped Redis). Arguments checked by `paged`.

        A read, one consistent view: the check of the epoch and the page are one step. Its
        cost is the page's, not the log's (memory: a bisection of the numbers; SQLite: the
        charges' seq key; Redis: the P:charges scores). The log (up to ``max_tasks`` held and
        ``usage_log_limit`` finished charges) is read by pages only, never whole: a test that
        wants all of it walks them."""

    @abstractmethod
    async def charge_tail(self, count: int) -> list[Charge]:
        """The newest ``count`` charges of the usage log (the last held), oldest first: what
        the dashboard's billing page shows first. A read, at the cost of ``count``; ``count``
        checked as `paged` checks it."""

    @abstractmethod
    async def get_charge(self, task_id: str) -> Charge | None:
        """The task's charge while the usage log lists it (None once trimmed, or never held).
        A read."""

    @abstractmethod
    async def usage_sums(self) -> list[Sums]:
        """The running `Sums` of every charge held since the last ``reset`` (listed or
        trimmed), one row per owner, key, model and state. Each backend moves them in the
        same atomic step as the hold and the settlement (a trim moves nothing: a trimmed
        charge still counts), so a step that answers an error moved nothing and this read, one
        consistent state, never sees half a move. Its cost is the number of groups, not of
        charges. A read, apart from ``charge_page``: a charge settled between the two reads
        is counted as settled here and listed held there."""

    @abstractmethod
    async def set_balance(
        self, owner: str, label: str, amount: int | None, now: Now = None, most: int = 0
    ) -> bool:
        """Atomically settle the owner's holds due by ``now``, then set the balance available
        now (None: remove it, unlimited); True. Open holds keep what they took. With ``most``
        (> 0), an owner without a balance gets one only while fewer than ``most`` owners have
        one: otherwise False, and nothing changes (nothing is settled either)."""

    @abstractmethod
    async def list_balances(self) -> dict[str, tuple[str, int]]:
        """owner -> (masked key, balance). A read."""

    @abstractmethod
    async def reset(self) -> None:
        """Forget everything: tasks, blobs, faults, journal (and its numbering, which starts
        again at 1 under a new epoch: `journal_page` refuses a cursor from before), usage,
        balances, the manual clock's time; the id streams ``claim_id_stream`` handed out stay
        claimed, the mode ``claim_clock`` kept stays, and the numbering of task positions
        (`Position`) goes on, epoch and all. Not one step on a networked backend: one that
        failed may be half done, and repeating it finishes it."""

    # -- what only a shared backend has (defaults: a local backend's) ----------------------
    #: Around one HTTP request (``async with store.request_scope():``): a networked backend
    #: reads the rules, the clock and the task's charge state once, with the task, and answers
    #: the request's later reads from that (briefly valid) snapshot. None, the default: the
    #: backend gains nothing, and the request path wraps nothing (no work per request).
    request_scope: Callable[[], AbstractAsyncContextManager[object]] | None = None

    @property
    def round_trips(self) -> int | None:
        """What this store has sent to a networked backend so far (one command, pipeline or
        script each: what a request costs); None for a local backend."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release connections; the default backend has none."""

    async def ping(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Raise ``StoreUnavailable`` when the backend cannot answer (a local one always can)."""

    async def claim_id_stream(self) -> int:
        """Atomically, a number no other emulator sharing this store has got: 0 for the first
        (and for a store of one's own). Task ids are drawn from a stream per number, so
        processes sharing a seed and a store never draw the same ids."""
        return 0
