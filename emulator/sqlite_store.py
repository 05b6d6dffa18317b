"""State in one SQLite file, so an emulator restarted on the same file loses nothing.

The stdlib ``sqlite3`` driver runs in a worker thread (``anyio.to_thread``) so a slow disk never
stalls the event loop. One connection per store, used by one thread at a time (a lock); every
operation that must be atomic is one statement or one ``BEGIN IMMEDIATE`` transaction, so it is
also atomic against a second process opening the same file. WAL mode lets readers run while a
writer commits; ``synchronous=NORMAL`` survives a killed process (only a power cut may lose the
last commits).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .billing import Charge, ChargeState
from .faults import FaultRule
from .store import Expiry, Store, ended_at
from .tasks import Task

T = TypeVar("T")

#: Bumped when the tables change; a file of another version is refused, not misread.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    ended_at REAL NOT NULL,
    polls INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner, seq);
CREATE INDEX IF NOT EXISTS tasks_ended ON tasks (ended_at, seq);
CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fault_counts (
    id TEXT PRIMARY KEY, evaluations INTEGER NOT NULL DEFAULT 0, hits INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS charges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_owner ON charges (owner, seq);
CREATE TABLE IF NOT EXISTS balances (
    owner TEXT PRIMARY KEY, label TEXT NOT NULL, amount INTEGER NOT NULL
);
"""


def _task_row(task: Task) -> tuple[str, str, float, int, str]:
    data = task.to_dict()
    polls = data.pop("polls")  # kept in its own column so a poll is one UPDATE
    return task.task_id, task.owner, ended_at(task), polls, json.dumps(data)


def _task(data: str, polls: int) -> Task:
    return Task.from_dict(json.loads(data) | {"polls": polls})


class SqliteStore(Store):
    """Every piece of state in tables of one SQLite file (created with its folder if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit (isolation_level=None): transactions are explicit BEGIN IMMEDIATE.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                row = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                    db.execute(
                        "INSERT INTO meta VALUES ('clock', 0.0), ('journal_seq', 0), ('streams', 0)"
                    )
                elif row[0] != SCHEMA_VERSION:
                    raise ValueError(f"schema version {row[0]}, this emulator reads only 1")
        except (OSError, sqlite3.Error, ValueError) as exc:
            raise ValueError(f"store 'sqlite://{self.path}' cannot be opened: {exc}") from None

    # -- plumbing ------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit: BEGIN IMMEDIATE takes the write lock up front (no upgrade races)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def _run(self, work: Callable[[sqlite3.Connection], T], atomic: bool = False) -> T:
        def call() -> T:
            with self._lock:
                if not atomic:
                    return work(self._db)
                with self._transaction() as db:
                    return work(db)

        return await anyio.to_thread.run_sync(call)

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

    # -- tasks ---------------------------------------------------------------------------
    async def insert_task(self, task: Task) -> bool:
        return await self._changed(
            "INSERT INTO tasks (task_id, owner, ended_at, polls, data) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (task_id) DO NOTHING",
            _task_row(task),
        )

    async def get_task(self, task_id: str) -> Task | None:
        row = await self._one("SELECT data, polls FROM tasks WHERE task_id = ?", (task_id,))
        return None if row is None else _task(*row)

    async def count_poll(self, task_id: str, owner: str | None = None) -> Task | None:
        row = await self._one(
            "UPDATE tasks SET polls = polls + 1 WHERE task_id = ? AND (? IS NULL OR owner = ?)"
            " RETURNING data, polls",
            (task_id, owner, owner),
        )
        return None if row is None else _task(*row)

    async def replace_task(self, task: Task) -> bool:
        task_id, owner, end, polls, data = _task_row(task)
        return await self._changed(
            "UPDATE tasks SET owner = ?, ended_at = ?, polls = ?, data = ? WHERE task_id = ?",
            (owner, end, polls, data, task_id),
        )

    async def remove_task(self, task_id: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM blobs WHERE key = ?", (f"ref:{task_id}",))
            return db.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,)).rowcount == 1

        return await self._run(work, atomic=True)

    async def list_tasks(self, owner: str | None = None) -> list[Task]:
        if owner is None:
            rows = await self._all("SELECT data, polls FROM tasks ORDER BY seq")
        else:
            rows = await self._all(
                "SELECT data, polls FROM tasks WHERE owner = ? ORDER BY seq", (owner,)
            )
        return [_task(*row) for row in rows]

    async def expire(self, finished_before: float, now: float, keep: int | None) -> Expiry:
        def work(db: sqlite3.Connection) -> Expiry:
            # Both deletions use the ended_at index; RETURNING hands back what went.
            removed = db.execute(
                "DELETE FROM tasks WHERE ended_at <= ? RETURNING data, polls", (finished_before,)
            ).fetchall()
            (count,) = db.execute("SELECT count(*) FROM tasks").fetchone()
            if keep is not None and count > keep:
                removed += db.execute(
                    "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE ended_at <= ?"
                    " ORDER BY ended_at, seq LIMIT ?) RETURNING data, polls",
                    (now, count - keep),
                ).fetchall()
            tasks = [_task(*row) for row in removed]
            db.executemany(
                "DELETE FROM blobs WHERE key = ?", [(f"ref:{t.task_id}",) for t in tasks]
            )
            (remaining,) = db.execute("SELECT count(*) FROM tasks").fetchone()
            return Expiry(tasks, int(remaining))

        return await self._run(work, atomic=True)

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

    # -- fault rules ---------------------------------------------------------------------
    async def add_fault(self, rule: FaultRule) -> None:
        def work(db: sqlite3.Connection) -> None:
            # Delete then insert: a replaced rule moves to the end, as in MemoryStore.
            db.execute("DELETE FROM faults WHERE id = ?", (rule.id,))
            db.execute(
                "INSERT INTO faults (id, data) VALUES (?, ?)", (rule.id, json.dumps(rule.to_dict()))
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

    async def remove_fault(self, rule_id: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM fault_counts WHERE id = ?", (rule_id,))
            return db.execute("DELETE FROM faults WHERE id = ?", (rule_id,)).rowcount == 1

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

    # -- journal -------------------------------------------------------------------------
    async def append_journal(self, entry: dict[str, Any], limit: int) -> int:
        def work(db: sqlite3.Connection) -> int:
            (seq,) = db.execute(
                "UPDATE meta SET value = value + 1 WHERE name = 'journal_seq' RETURNING value"
            ).fetchone()
            db.execute(
                "INSERT INTO journal VALUES (?, ?)",
                (seq, json.dumps(entry | {"seq": seq}, default=str)),
            )
            db.execute("DELETE FROM journal WHERE seq <= ?", (seq - limit,))
            return int(seq)

        return await self._run(work, atomic=True)

    async def list_journal(self) -> list[dict[str, Any]]:
        rows = await self._all("SELECT data FROM journal ORDER BY seq")
        return [json.loads(data) for (data,) in rows]

    async def clear_journal(self) -> None:
        await self._changed("DELETE FROM journal")

    # -- billing -------------------------------------------------------------------------
    async def hold(self, charge: Charge) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT amount FROM balances WHERE owner = ?", (charge.owner,)
            ).fetchone()
            if row is not None:
                if row[0] < charge.held:
                    return False
                db.execute(
                    "UPDATE balances SET amount = amount - ? WHERE owner = ?",
                    (charge.held, charge.owner),
                )
            db.execute(
                "INSERT INTO charges (task_id, owner, state, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (task_id) DO UPDATE SET owner = excluded.owner,"
                " state = excluded.state, data = excluded.data",
                (charge.task_id, charge.owner, charge.state, json.dumps(charge.to_dict())),
            )
            return True

        return await self._run(work, atomic=True)

    async def settle(
        self, task_id: str, state: ChargeState, images: int, amount: int, settled_at: float
    ) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT data FROM charges WHERE task_id = ? AND state = 'held'", (task_id,)
            ).fetchone()
            if row is None:
                return False
            current = Charge(**json.loads(row[0]))
            ended = current.to_dict() | {
                "state": state,
                "images": images,
                "amount": amount,
                "settled_at": settled_at,
            }
            db.execute(
                "UPDATE charges SET state = ?, data = ? WHERE task_id = ?",
                (state, json.dumps(ended), task_id),
            )
            db.execute(
                "UPDATE balances SET amount = amount + ? WHERE owner = ?",
                (current.held - amount, current.owner),
            )
            return True

        return await self._run(work, atomic=True)

    async def list_charges(self, owner: str | None = None) -> list[Charge]:
        if owner is None:
            rows = await self._all("SELECT data FROM charges ORDER BY seq")
        else:
            rows = await self._all(
                "SELECT data FROM charges WHERE owner = ? ORDER BY seq", (owner,)
            )
        return [Charge(**json.loads(data)) for (data,) in rows]

    async def set_balance(self, owner: str, label: str, amount: int | None) -> None:
        if amount is None:
            await self._changed("DELETE FROM balances WHERE owner = ?", (owner,))
        else:
            await self._changed(
                "INSERT INTO balances VALUES (?, ?, ?) ON CONFLICT (owner)"
                " DO UPDATE SET label = excluded.label, amount = excluded.amount",
                (owner, label, amount),
            )

    async def list_balances(self) -> dict[str, tuple[str, int]]:
        rows = await self._all("SELECT owner, label, amount FROM balances ORDER BY rowid")
        return {owner: (label, int(amount)) for owner, label, amount in rows}

    async def reset(self) -> None:
        def work(db: sqlite3.Connection) -> None:
            tables = ("tasks", "blobs", "faults", "fault_counts", "journal", "charges", "balances")
            for table in tables:
                db.execute(f"DELETE FROM {table}")
            db.execute("UPDATE meta SET value = 0 WHERE name IN ('clock', 'journal_seq')")

        await self._run(work, atomic=True)

    async def close(self) -> None:
        def work() -> None:
            with self._lock:
                self._db.close()

        await anyio.to_thread.run_sync(work)
