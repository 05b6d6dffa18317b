"""The SQLite store's journal pages: the ``journal`` table's ``seq`` key finds a page's start,
and the numbering's epoch lives in ``meta`` as 'journal_epoch' (a reset, which starts the
numbering again at 1, draws a new one in the same transaction)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..base import JournalPage, Position, new_epoch

#: The meta row naming the journal numbering (made with the file, renewed by every reset).
EPOCH = "journal_epoch"


def keep_epoch(db: sqlite3.Connection) -> None:
    """Give the file a journal epoch if it has none (new, or from before journal pages)."""
    db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (EPOCH, new_epoch()))


def restart(db: sqlite3.Connection) -> None:
    """A new epoch for the numbering ``reset`` starts again (inside reset's transaction)."""
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (EPOCH, new_epoch()))


def page(db: sqlite3.Connection, after: Position | None, count: int) -> JournalPage | None:
    """`Store.journal_page` in one deferred (read) transaction: the epoch's check and the rows
    see one state, and writers do not wait for it (WAL). Through the seq key: a page costs its
    own rows, however many are kept."""
    db.execute("BEGIN")
    try:
        epoch = str(db.execute("SELECT value FROM meta WHERE name = ?", (EPOCH,)).fetchone()[0])
        if after is not None and after[1] != epoch:
            return None
        rows = db.execute(
            "SELECT data FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
            (-1 if after is None else after[0], count + 1),
        ).fetchall()
    finally:
        db.execute("COMMIT")
    more = len(rows) > count
    entries: list[dict[str, Any]] = [json.loads(data) for (data,) in rows[:count]]
    last = (int(entries[-1]["seq"]), epoch) if entries else None
    return JournalPage(entries, last, more)


def tail(db: sqlite3.Connection, count: int) -> list[dict[str, Any]]:
    """The newest ``count`` entries, oldest first (backwards on the key: no scan)."""
    rows = db.execute("SELECT data FROM journal ORDER BY seq DESC LIMIT ?", (count,)).fetchall()
    return [json.loads(data) for (data,) in reversed(rows)]
