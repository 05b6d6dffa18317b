"""The SQLite store's journal pages: the ``journal`` table's ``seq`` key finds a page's start,
and the numbering's epoch lives in ``meta`` as 'journal_epoch' (a reset, which starts the
numbering again at 1, draws a new one in the same transaction)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..pages import JournalPage, Position, new_epoch
from .paging import read_page

#: The meta row naming the journal numbering (made with the file, renewed by every reset).
EPOCH = "journal_epoch"


def keep_epoch(db: sqlite3.Connection) -> None:
    """Give the file a journal epoch if it has none (new, or from before journal pages)."""
    db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (EPOCH, new_epoch()))


def restart(db: sqlite3.Connection) -> None:
    """A new epoch for the numbering ``reset`` starts again (inside reset's transaction)."""
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (EPOCH, new_epoch()))


def page(db: sqlite3.Connection, after: Position | None, count: int) -> JournalPage | None:
    """`Store.journal_page` in one read transaction (`paging.read_page`): the journal's own
    epoch, by the entries' seq."""
    select = "SELECT data FROM journal WHERE seq > ? ORDER BY seq LIMIT ?"
    found = read_page(db, EPOCH, select, after, count)
    if found is None:
        return None
    rows, epoch, more = found
    entries: list[dict[str, Any]] = [json.loads(data) for (data,) in rows]
    last = (int(entries[-1]["seq"]), epoch) if entries else None
    return JournalPage(entries, last, more)


def tail(db: sqlite3.Connection, count: int) -> list[dict[str, Any]]:
    """The newest ``count`` entries, oldest first (backwards on the key: no scan)."""
    rows = db.execute("SELECT data FROM journal ORDER BY seq DESC LIMIT ?", (count,)).fetchall()
    return [json.loads(data) for (data,) in reversed(rows)]
