"""The SQLite store's tables, and the steps that decide on tasks and money.

Every function here runs inside one ``BEGIN IMMEDIATE`` transaction that ``SqliteStore`` opens
(it holds the file's write lock from the start), so each is atomic also against another
process on the same file, and a process killed half-way leaves nothing half-done: SQLite rolls
the transaction back. The decisions are the same as ``MemoryStore``'s, on rows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from typing import Any

from ...core.billing import Charge, settlement
from ...core.tasks import Task, ended_at, has_ended, images_returned
from ..base import Expiry, Forced, Now, Placed, evictions_due
from ..pages import TaskPage
from . import usage
from .paging import read_page
from .usage import charge_of

#: Bumped when the tables change; a file of another version is refused, not misread.
SCHEMA_VERSION = 4
#: Files of these versions are upgraded when opened (`usage.upgrade`): 3 loses its table of
#: trimmed sums, which the running sums made redundant; 2 first gets its running sums, built
#: from its log and that table, and its journal an epoch. Version 4 then, which an emulator
#: reading only 3 refuses (it would add to the table no longer there), or only 2 (it would
#: move no sums and keep the journal's epoch across a reset).
UPGRADABLE = (2, 3)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    -- clock time it ends, NULL while unknown (per_poll: until the poll that ends it)
    ended_at REAL,
    -- per_poll: the poll count that ends it, NULL on a time clock
    end_poll INTEGER,
    polls INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner, seq);
CREATE INDEX IF NOT EXISTS tasks_ended ON tasks (ended_at, seq) WHERE ended_at IS NOT NULL;
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
    -- held: when its task ends (NULL while unknown), so settle_due reads what is due
    due REAL,
    -- finished: settlement order, the bounded log drops the lowest first
    done INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_due ON charges (due) WHERE state = 'held';
CREATE INDEX IF NOT EXISTS charges_done ON charges (done) WHERE done IS NOT NULL;
CREATE TABLE IF NOT EXISTS balances (
    owner TEXT PRIMARY KEY, label TEXT NOT NULL, amount INTEGER NOT NULL
);
"""
#: Counters in ``meta`` and their values on a new (or reset) file; ``streams`` survives reset.
COUNTERS = {"clock": 0.0, "journal_seq": 0, "tasks": 0, "finished": 0, "done_seq": 0}
STREAMS = "streams"

_TASK_COLUMNS = "data, polls, ended_at"


def task_row(task: Task) -> tuple[str, str, float | None, int | None, int, str]:
    """(id, owner, ended_at, end_poll, polls, data): polls and the end live in columns so a
    poll is one UPDATE and the indexes can find what ended."""
    data = task.to_dict()
    polls, _ = data.pop("polls"), data.pop("finished_at")
    end = ended_at(task)
    return (
        task.task_id,
        task.owner,
        None if end == math.inf else end,
        task.schedule.end_poll,
        polls,
        json.dumps(data),
    )


def task_of(data: str, polls: int, end: float | None) -> Task:
    raw: dict[str, Any] = json.loads(data)
    per_poll = raw["schedule"].get("steps") is not None
    return Task.from_dict(raw | {"polls": polls, "finished_at": end if per_poll else None})


def counter(db: sqlite3.Connection, name: str, add: float = 0) -> Any:
    """A ``meta`` counter after adding ``add`` to it."""
    if add:
        db.execute("UPDATE meta SET value = value + ? WHERE name = ?", (add, name))
    return db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]


def clock(db: sqlite3.Connection, now: Now) -> float:
    return float(counter(db, "clock")) if now is None else now


# -- steps (each called inside one transaction) ------------------------------------------------
def insert_held(
    db: sqlite3.Connection,
    task: Task,
    charge: Charge,
    blob: bytes | None,
    cap: int,
    evict_at_most: int,
    now: Now,
    limit: int | None,
) -> Placed:
    if db.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task.task_id,)).fetchone():
        return "taken"
    at = clock(db, now)
    if cap and counter(db, "tasks") >= cap:
        _evict(db, evictions_due(int(counter(db, "tasks")), cap, evict_at_most), at, limit)
        if counter(db, "tasks") >= cap:
            return "full"
    balance = _balance(db, charge.owner)
    if balance is not None and balance < charge.held:
        settle_due(db, at, limit)  # what ended gives back first
        balance = _balance(db, charge.owner)
        if balance is not None and balance < charge.held:
            return "refused"
    if balance is not None:
        db.execute(
            "UPDATE balances SET amount = amount - ? WHERE owner = ?", (charge.held, charge.owner)
        )
    held = dataclasses.replace(charge, state="held", taken=0 if balance is None else charge.held)
    row = task_row(task)
    db.execute(
        "INSERT INTO tasks (task_id, owner, ended_at, end_poll, polls, data)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        row,
    )
    db.execute(
        "INSERT INTO charges (task_id, owner, state, due, data) VALUES (?, ?, 'held', ?, ?)",
        (task.task_id, charge.owner, row[2], json.dumps(held.to_dict())),
    )
    usage.held(db, held)
    counter(db, "tasks", 1)
    if blob is not None:
        db.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)", (f"ref:{task.task_id}", blob))
    return "placed"


def count_poll(
    db: sqlite3.Connection, task_id: str, owner: str | None, now: float | None
) -> Task | None:
    row = db.execute(
        "UPDATE tasks SET polls = polls + 1, ended_at = CASE WHEN end_poll IS NOT NULL"
        " AND ended_at IS NULL AND polls + 1 >= end_poll THEN :now ELSE ended_at END"
        " WHERE task_id = :id AND (:owner IS NULL OR owner = :owner)"
        f" RETURNING {_TASK_COLUMNS}, end_poll",
        {"id": task_id, "owner": owner, "now": clock(db, now)},
    ).fetchone()
    if row is None:
        return None
    if row[3] is not None and row[2] is not None:  # per_poll, ended: its hold is due then
        db.execute(
            "UPDATE charges SET due = ? WHERE task_id = ? AND state = 'held' AND due IS NULL",
            (row[2], task_id),
        )
    return task_of(*row[:3])


def force_end(db: sqlite3.Connection, task: Task, now: Now) -> Forced:
    row = db.execute(
        f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task.task_id,)
    ).fetchone()
    if row is None:
        return "missing"
    current = task_of(*row)
    if has_ended(current, clock(db, now)):
        return "ended"
    forced = dataclasses.replace(current, schedule=task.schedule, finished_at=task.finished_at)
    _, _, end, end_poll, _, data = task_row(forced)
    db.execute(
        "UPDATE tasks SET ended_at = ?, end_poll = ?, data = ? WHERE task_id = ?",
        (end, end_poll, data, task.task_id),
    )
    db.execute(
        "UPDATE charges SET due = ? WHERE task_id = ? AND state = 'held'", (end, task.task_id)
    )
    return forced


def expire(db: sqlite3.Connection, finished_before: float, now: Now, limit: int | None) -> Expiry:
    at = clock(db, now)
    rows = db.execute(
        f"SELECT {_TASK_COLUMNS} FROM tasks WHERE ended_at <= ? ORDER BY ended_at, seq",
        (finished_before,),
    ).fetchall()
    removed = sum(_remove_if_ended(db, task_of(*row), at, limit) for row in rows)
    return Expiry(removed, int(counter(db, "tasks")))


def settle(
    db: sqlite3.Connection, task_id: str, images: int, settled_at: float, limit: int | None
) -> bool:
    row = db.execute(
        "SELECT data FROM charges WHERE task_id = ? AND state = 'held'", (task_id,)
    ).fetchone()
    if row is None:
        return False
    current = charge_of(row[0])
    end = settlement(current, images)
    refunded = 0 if _balance(db, current.owner) is None else end.back
    if refunded:
        db.execute(
            "UPDATE balances SET amount = amount + ? WHERE owner = ?", (refunded, current.owner)
        )
    usage.settled(db, current, end, refunded)
    ended = dataclasses.replace(
        current,
        state=end.state,
        images=end.images,
        amount=end.amount,
        settled_at=settled_at,
        refunded=refunded,
    )
    db.execute(
        "UPDATE charges SET state = ?, due = NULL, done = ?, data = ? WHERE task_id = ?",
        (end.state, counter(db, "done_seq", 1), json.dumps(ended.to_dict()), task_id),
    )
    counter(db, "finished", 1)
    _trim(db, limit)
    return True


def settle_due(db: sqlite3.Connection, at: float, limit: int | None) -> int:
    rows = db.execute(
        "SELECT t.data, t.polls, t.ended_at FROM charges c JOIN tasks t USING (task_id)"
        " WHERE c.state = 'held' AND c.due <= ? ORDER BY c.due, c.seq",
        (at,),
    ).fetchall()
    settled = 0
    for row in rows:
        task = task_of(*row)
        if has_ended(task, at):
            settled += settle(db, task.task_id, images_returned(task), ended_at(task), limit)
    return settled


def set_balance(
    db: sqlite3.Connection, owner: str, label: str, amount: int | None, at: float, limit: int | None
) -> None:
    settle_due(db, at, limit)
    if amount is None:
        db.execute("DELETE FROM balances WHERE owner = ?", (owner,))
    else:
        db.execute(
            "INSERT INTO balances VALUES (?, ?, ?) ON CONFLICT (owner)"
            " DO UPDATE SET label = excluded.label, amount = excluded.amount",
            (owner, label, amount),
        )


def balance_refused(db: sqlite3.Connection, owner: str, most: int) -> bool:
    """Whether ``owner`` has no balance while ``most`` owners have one (a new one is refused)."""
    if db.execute("SELECT 1 FROM balances WHERE owner = ?", (owner,)).fetchone() is not None:
        return False
    return int(db.execute("SELECT count(*) FROM balances").fetchone()[0]) >= most


def task_page(db: sqlite3.Connection, after: tuple[int, str] | None, count: int) -> TaskPage | None:
    """`Store.task_page` in one read transaction (`paging.read_page`): the file's epoch, by
    the tasks' seq."""
    select = f"SELECT seq, {_TASK_COLUMNS} FROM tasks WHERE seq > ? ORDER BY seq LIMIT ?"
    found = read_page(db, "epoch", select, after, count)
    if found is None:
        return None
    rows, epoch, more = found
    last = (int(rows[-1][0]), epoch) if rows else None
    return TaskPage([task_of(*row[1:]) for row in rows], last, more)


def reset(db: sqlite3.Connection) -> None:
    tables = ("tasks", "blobs", "faults", "fault_counts", "journal", "charges")
    for table in (*tables, "usage_sums", "balances"):
        db.execute(f"DELETE FROM {table}")
    db.executemany(
        "UPDATE meta SET value = ? WHERE name = ?", [(v, k) for k, v in COUNTERS.items()]
    )


# -- parts of the steps ---------------------------------------------------------------------
def _balance(db: sqlite3.Connection, owner: str) -> int | None:
    row = db.execute("SELECT amount FROM balances WHERE owner = ?", (owner,)).fetchone()
    return None if row is None else int(row[0])


def _evict(db: sqlite3.Connection, count: int, at: float, limit: int | None) -> None:
    """Remove up to ``count`` tasks that ended by ``at``, earliest end first."""
    # A few spare rows: the index orders by a float sum that the exact check may decline.
    rows = db.execute(
        f"SELECT {_TASK_COLUMNS} FROM tasks WHERE ended_at <= ? ORDER BY ended_at, seq LIMIT ?",
        (at, count + 16),
    ).fetchall()
    removed = 0
    for row in rows:
        if removed < count:
            removed += _remove_if_ended(db, task_of(*row), at, limit)


def _remove_if_ended(db: sqlite3.Connection, task: Task, at: float, limit: int | None) -> bool:
    if not has_ended(task, at):
        return False
    db.execute("DELETE FROM tasks WHERE task_id = ?", (task.task_id,))
    db.execute("DELETE FROM blobs WHERE key = ?", (f"ref:{task.task_id}",))
    counter(db, "tasks", -1)
    settle(db, task.task_id, images_returned(task), ended_at(task), limit)
    return True


def _trim(db: sqlite3.Connection, limit: int | None) -> None:
    """Drop the oldest finished charges beyond ``limit`` (their sums stay in ``usage_sums``:
    a trim moves nothing)."""
    over = 0 if limit is None else int(counter(db, "finished")) - limit
    if over <= 0:
        return
    dropped = db.execute(
        "DELETE FROM charges WHERE done IN"
        " (SELECT done FROM charges WHERE done IS NOT NULL ORDER BY done LIMIT ?)",
        (over,),
    ).rowcount
    counter(db, "finished", -dropped)


__all__ = ["COUNTERS", "SCHEMA", "SCHEMA_VERSION", "STREAMS"]
