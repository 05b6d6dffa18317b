"""State in one SQLite file, so an emulator restarted on the same file loses nothing.

The stdlib ``sqlite3`` driver runs on a thread of this store's own (a one-thread executor), so
a slow disk never stalls the event loop and no other work that waits for anyio's shared worker
threads (rendering downloads) can hold a store operation back. One connection per store, used
by that one thread. Every operation that must be atomic is one statement or one
``BEGIN IMMEDIATE`` transaction (``sqlite_ledger``), so it is also atomic against a second
process opening the same file, and a killed process leaves no step half-done. WAL mode lets
readers run while a writer commits; ``synchronous=NORMAL`` survives a killed process (only a
power cut may lose the last commits).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ...core.billing import Charge, Sums
from ...core.faults import FaultRule
from ...core.tasks import Task
from ...errors import StoreUnavailable
from ..base import EVICT_AT_MOST, Expiry, Forced, Now, Placed, Store
from ..pages import ChargePage, JournalPage, Position, TaskPage, listed_at_most, new_epoch, paged
from . import journal, ledger, version
from . import usage as sqlite_usage

T = TypeVar("T")


class SqliteStore(Store):
    """Every piece of state in tables of one SQLite file (created with its folder if missing)."""

    def __init__(self, path: str | Path, *, evict_at_most: int = EVICT_AT_MOST) -> None:
        self.path = Path(path)
        super().__init__(evict_at_most=evict_at_most)  # checked before the thread and file
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emulator-sqlite")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit (isolation_level=None): transactions are explicit BEGIN IMMEDIATE.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction() as db:
                row = version.of_file(db)
                if row is not None and row not in (ledger.SCHEMA_VERSION, *ledger.UPGRADABLE):
                    raise ValueError(version.refusal(row))
                for statement in ledger.SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('schema', ?)", (ledger.SCHEMA_VERSION,))
                    counters = {**ledger.COUNTERS, ledger.STREAMS: 0}
                    db.executemany("INSERT INTO meta VALUES (?, ?)", counters.items())
                # The task numbering's epoch, made with the file (or on the first open of a
                # file from before epochs): a cursor of another file is refused, not followed.
                db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (new_epoch(),))
                # The usage totals' running sums, built from the log on the first open of a
                # file from before them (version 2), the sums of the trimmed charges dropped
                # (versions 2 and 3: the running sums count them), and the journal's epoch;
                # then it is a version 4 file, which the versions before refuse.
                sqlite_usage.upgrade(db)
                sqlite_usage.keep_epoch(db)
                journal.keep_epoch(db)
                if row in ledger.UPGRADABLE:
                    db.execute(
                        "UPDATE meta SET value = ? WHERE name = 'schema'", (ledger.SCHEMA_VERSION,)
                    )
        except (OSError, sqlite3.Error, ValueError) as exc:
            self._thread.shutdown(wait=False)
            raise ValueError(f"store 'sqlite://{self.path}' cannot be opened: {exc}") from None

    # -- plumbing ------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit: BEGIN IMMEDIATE takes the write lock up front (no upgrade races)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite rolls some failures back itself (disk full, I/O error): a ROLLBACK then
            # would fail and hide the cause. A failed COMMIT may leave the transaction open,
            # and every later BEGIN would fail with it: rolled back here.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    async def _run(self, work: Callable[[sqlite3.Connection], T], atomic: bool = False) -> T:
        def call() -> T:
            try:
                if not atomic:
                    return work(self._db)
                with self._transaction() as db:
                    return work(db)
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None
            except sqlite3.DatabaseError as exc:
                if type(exc) is sqlite3.DatabaseError:  # the file itself: "malformed"
                    raise self._unavailable(exc) from None
                raise  # a constraint or a misuse: this code's mistake, a 500 that says so

        # This store's own thread: never queued behind other work on shared worker threads.
        return await asyncio.wrap_future(self._thread.submit(call))

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        """The file fails now (disk full, I/O error, another process holding the write lock
        past the busy timeout, made read-only or damaged): a 503 naming it and SQLite's
        reason, never a 500. The failed step changed nothing (rolled back): a retry is safe."""
        return StoreUnavailable(
            f"the emulator's store (sqlite://{self.path}) cannot answer: {exc}; the step"
            " changed nothing, retry once the cause is gone",
            headers={"Retry-After": "1"},
        )

    async def _one(self, sql: str, params: Any = ()) -> Any:
        """The first row one statement returns, or None."""
        return await self._run(lambda db: db.execute(sql, params).fetchone())

    async def _all(self, sql: str, params: Any = ()) -> list[Any]:
        return await self._run(lambda db: db.execute(sql, params).fetchall())

    async def _changed(self, sql: str, params: Any = ()) -> bool:
        """Whether one statement changed a row."""
        return await self._run(lambda db: db.execute(sql, params).rowcount == 1)

    async def claim_id_stream(self) -> int:
        """0 for the first emulator ever on this file, then 1, 2, ...: an emulator restarted on
        the file draws task ids from a fresh stream, never the ids it drew before. A reset
        keeps the count (a second process on the file may still use its stream)."""
        row = await self._one(
            "UPDATE meta SET value = value + 1 WHERE name = 'streams' RETURNING value"
        )
        return int(row[0]) - 1

    # -- tasks and their charges (each one transaction: sqlite_ledger) ---------------------
    async def insert_held(
        self, task: Task, charge: Charge, blob: bytes | None, *, cap: int, now: Now
    ) -> Placed:
        limit, bound = self.usage_log_limit, self.evict_at_most
        return await self._run(
            lambda db: ledger.insert_held(db, task, charge, blob, cap, bound, now, limit),
            atomic=True,
        )

    async def get_task(self, task_id: str) -> Task | None:
        row = await self._one(
            "SELECT data, polls, ended_at FROM tasks WHERE task_id = ?", (task_id,)
        )
        return None if row is None else ledger.task_of(*row)

    async def count_poll(
        self, task_id: str, owner: str | None = None, now: float | None = None
    ) -> Task | None:
        return await self._run(lambda db: ledger.count_poll(db, task_id, owner, now), atomic=True)

    async def force_end(self, task: Task, now: Now) -> Forced:
        return await self._run(lambda db: ledger.force_end(db, task, now), atomic=True)

    async def list_tasks(
        self, owner: str | None = None, *, newest: int | None = None
    ) -> list[Task]:
        newest = listed_at_most(newest)
        where, params = ("", ()) if owner is None else ("WHERE owner = ?", (owner,))
        # Newest first with a LIMIT (-1: none), then reversed into submission order.
        rows = await self._all(
            f"SELECT data, polls, ended_at FROM tasks {where} ORDER BY seq DESC LIMIT ?",
            (*params, -1 if newest is None else newest),
        )
        rows.reverse()
        return [ledger.task_of(*row) for row in rows]

    async def task_page(self, after: Position | None, count: int) -> TaskPage | None:
        after, count = paged(after, count)
        # A task's number is its seq: AUTOINCREMENT never gives one twice, also not after a
        # reset (which empties the table, not sqlite_sequence); the epoch is the file's (in
        # meta, kept by reset). One read transaction: the epoch's check and the page see one
        # state. Through the seq key: a page costs its own rows, however many are stored.
        return await self._run(lambda db: ledger.task_page(db, after, count))

    async def count_tasks(self) -> int:
        # The counter the cap reads, kept with every insert and removal: no scan of the table.
        return int(await self._run(lambda db: ledger.counter(db, "tasks")))

    async def expire(self, finished_before: float, now: Now) -> Expiry:
        limit = self.usage_log_limit
        return await self._run(
            lambda db: ledger.expire(db, finished_before, now, limit), atomic=True
        )

    # -- blobs and clock -------------------------------------------------------------------
    async def put_blob(self, key: str, data: bytes) -> None:
        await self._changed(
            "INSERT INTO blobs VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET data = excluded.data",
            (key, data),
        )

    async def get_blob(self, key: str) -> bytes | None:
        row = await self._one("SELECT data FROM blobs WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    async def clock_now(self) -> float:
        return float((await self._one("SELECT value FROM meta WHERE name = 'clock'"))[0])

    async def advance_clock(self, seconds: float) -> float:
        row = await self._one(
            "UPDATE meta SET value = value + ? WHERE name = 'clock' RETURNING value", (seconds,)
        )
        return float(row[0])

    async def claim_clock(self, mode: str) -> str:
        # A meta row (no new table, so no new schema version): a file from before it has none
        # and takes the mode of its next start. One transaction: a second process on the
        # file claims after this one, and reads what this one kept. Reset keeps the row.
        def work(db: sqlite3.Connection) -> str:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('clock_mode', ?)", (mode,))
            return str(db.execute("SELECT value FROM meta WHERE name = 'clock_mode'").fetchone()[0])

        return await self._run(work, atomic=True)

    # -- fault rules ---------------------------------------------------------------------
    async def add_fault(self, rule: FaultRule) -> None:
        def work(db: sqlite3.Connection) -> None:
            # Delete then insert: a replaced rule moves to the end, as in MemoryStore.
            db.execute("DELETE FROM faults WHERE id = ?", (rule.id,))
            db.execute(
                "INSERT INTO faults (id, data) VALUES (?, ?)", (rule.id, json.dumps(rule.stored()))
            )
            db.execute(
                "INSERT OR REPLACE INTO fault_counts (id, evaluations, hits) VALUES (?, 0, 0)",
                (rule.id,),
            )

        await self._run(work, atomic=True)

    async def list_faults(self) -> list[FaultRule]:
        return [
            FaultRule.from_dict(json.loads(data))
            for (data,) in await self._all("SELECT data FROM faults ORDER BY seq")
        ]

    async def remove_fault(self, rule_id: str, serial: str | None = None) -> int | None:
        def work(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT data FROM faults WHERE id = ?", (rule_id,)).fetchone()
            if serial is not None and (row is None or _serial(row[0]) != serial):
                return None
            hits = db.execute(
                "DELETE FROM fault_counts WHERE id = ? RETURNING hits", (rule_id,)
            ).fetchone()
            db.execute("DELETE FROM faults WHERE id = ?", (rule_id,))
            return None if row is None else int(hits[0]) if hits else 0

        return await self._run(work, atomic=True)

    async def clear_faults(self) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM faults")
            db.execute("DELETE FROM fault_counts")

        await self._run(work, atomic=True)

    async def count_fault_evaluation(self, rule_id: str) -> int:
        row = await self._one(
            "INSERT INTO fault_counts (id, evaluations) VALUES (?, 1) ON CONFLICT (id)"
            " DO UPDATE SET evaluations = evaluations + 1 RETURNING evaluations",
            (rule_id,),
        )
        return int(row[0])

    async def claim_fault(self, rule_id: str, times: int | None) -> bool:
        # One statement: the hit is taken only while below ``times`` (NULL: unlimited). The
        # SELECT's WHERE is also what SQLite's grammar needs before an upsert clause.
        row = await self._one(
            "INSERT INTO fault_counts (id, hits) SELECT :id, 1 WHERE coalesce(:times, 1) >= 1"
            " ON CONFLICT (id) DO UPDATE SET hits = hits + 1"
            " WHERE :times IS NULL OR hits < :times RETURNING hits",
            {"id": rule_id, "times": times},
        )
        return row is not None

    async def fault_hits(self) -> dict[str, int]:
        rows = await self._all(
            "SELECT id, hits FROM fault_counts WHERE hits > 0 OR id IN (SELECT id FROM faults)"
        )
        return {rule_id: int(hits) for rule_id, hits in rows}

    async def fault_rule_hits(self, rule_id: str) -> tuple[str, int] | None:
        row = await self._one(
            "SELECT f.data, coalesce(c.hits, 0) FROM faults AS f"
            " LEFT JOIN fault_counts AS c ON c.id = f.id WHERE f.id = ?",
            (rule_id,),
        )
        return None if row is None else (_serial(row[0]), int(row[1]))

    # -- journal -------------------------------------------------------------------------
    async def append_journal(self, entry: dict[str, Any], limit: int) -> None:
        def work(db: sqlite3.Connection) -> None:
            (seq,) = db.execute(
                "UPDATE meta SET value = value + 1 WHERE name = 'journal_seq' RETURNING value"
            ).fetchone()
            db.execute(
                "INSERT INTO journal VALUES (?, ?)",
                (seq, json.dumps(entry | {"seq": seq}, default=str)),
            )
            db.execute("DELETE FROM journal WHERE seq <= ?", (seq - limit,))

        await self._run(work, atomic=True)

    async def journal_page(self, after: Position | None, count: int) -> JournalPage | None:
        after, count = paged(after, count)
        return await self._run(lambda db: journal.page(db, after, count))

    async def journal_tail(self, count: int) -> list[dict[str, Any]]:
        count = paged(None, count)[1]
        return await self._run(lambda db: journal.tail(db, count))

    async def clear_journal(self, *, mark: bool = True) -> None:
        await self._run(lambda db: journal.clear(db, mark), atomic=True)

    # -- billing -------------------------------------------------------------------------
    async def settle(self, task_id: str, images: int, settled_at: float) -> bool:
        limit = self.usage_log_limit
        return await self._run(
            lambda db: ledger.settle(db, task_id, images, settled_at, limit), atomic=True
        )

    async def settle_due(self, now: Now) -> int:
        limit = self.usage_log_limit
        return await self._run(
            lambda db: ledger.settle_due(db, ledger.clock(db, now), limit), atomic=True
        )

    async def charge_page(self, after: Position | None, count: int) -> ChargePage | None:
        after, count = paged(after, count)
        return await self._run(lambda db: sqlite_usage.charge_page(db, after, count))

    async def charge_tail(self, count: int) -> list[Charge]:
        count = paged(None, count)[1]
        rows = await self._all("SELECT data FROM charges ORDER BY seq DESC LIMIT ?", (count,))
        return [sqlite_usage.charge_of(data) for (data,) in reversed(rows)]

    async def get_charge(self, task_id: str) -> Charge | None:
        row = await self._one("SELECT data FROM charges WHERE task_id = ?", (task_id,))
        return None if row is None else sqlite_usage.charge_of(row[0])

    async def usage_sums(self) -> list[Sums]:
        return await self._run(sqlite_usage.usage_sums)

    async def set_balance(
        self, owner: str, label: str, amount: int | None, now: Now = None, most: int = 0
    ) -> bool:
        limit = self.usage_log_limit

        def work(db: sqlite3.Connection) -> bool:
            if amount is not None and most > 0 and ledger.balance_refused(db, owner, most):
                return False
            ledger.set_balance(db, owner, label, amount, ledger.clock(db, now), limit)
            return True

        return await self._run(work, atomic=True)

    async def list_balances(self) -> dict[str, tuple[str, int]]:
        rows = await self._all("SELECT owner, label, amount FROM balances ORDER BY rowid")
        return {owner: (label, int(amount)) for owner, label, amount in rows}

    async def reset(self) -> None:
        def work(db: sqlite3.Connection) -> None:
            ledger.reset(db)  # the journal's numbering back to 0: a new epoch names it
            journal.restart(db)

        await self._run(work, atomic=True)

    async def close(self) -> None:
        await self._run(lambda db: db.close())
        self._thread.shutdown(wait=False)


def _serial(data: str) -> str:
    """The ``serial`` of a stored rule's JSON ("" for one stored before serials)."""
    return str(json.loads(data).get("serial", ""))
