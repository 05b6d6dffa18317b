"""The SQLite store's journal pages: the ``journal`` table's ``seq`` key finds a page's start,
and the numbering's epoch lives in ``meta`` as 'journal_epoch' (a reset, which starts the
numbering again at 1, draws a new one in the same transaction)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..pages import JournalPage, Position, dropped_before, new_epoch
from .paging import read_page

#: The meta row naming the journal numbering (made with the file, renewed by every reset).
EPOCH = "journal_epoch"
#: The meta row holding the newest number when the journal was last cleared (0 after a reset).
CLEARED = "journal_cleared"


def keep_epoch(db: sqlite3.Connection) -> None:
    """Give the file a journal epoch if it has none (new, or from before journal pages), and
    its clear's mark (`JournalPage.dropped`)."""
    db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (EPOCH, new_epoch()))
    db.execute("INSERT OR IGNORE INTO meta VALUES (?, 0)", (CLEARED,))


def restart(db: sqlite3.Connection) -> None:
    """A new epoch for the numbering ``reset`` starts again (inside reset's transaction)."""
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (EPOCH, new_epoch()))
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, 0)", (CLEARED,))


def clear(db: sqlite3.Connection, mark: bool = True) -> None:
    """`Store.clear_journal` (inside a transaction): the entries go, with ``mark`` the mark
    moves."""
    db.execute("DELETE FROM journal")
    if not mark:
        return
    db.execute(
        "INSERT OR REPLACE INTO meta VALUES (?, (SELECT value FROM meta WHERE name = ?))",
        (CLEARED, "journal_seq"),
    )


def page(db: sqlite3.Connection, after: Position | None, count: int) -> JournalPage | None:
    """`Store.journal_page` in one read transaction (`paging.read_page`): the journal's own
    epoch, by the entries' seq."""
    select = "SELECT data FROM journal WHERE seq > ? ORDER BY seq LIMIT ?"
    db.execute("BEGIN")  # the numbers dropped_before needs, read with the page: one step
    try:
        found = read_page(db, EPOCH, select, after, count)
        newest, cleared = (
            int(db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0])
            for name in ("journal_seq", CLEARED)
        )
    finally:
        db.execute("COMMIT")
    if found is None:
        return None
    rows, epoch, more = found
    entries: list[dict[str, Any]] = [json.loads(data) for (data,) in rows]
    last = (int(entries[-1]["seq"]), epoch) if entries else None
    first = int(entries[0]["seq"]) if entries else None
    return JournalPage(entries, last, more, dropped_before(first, newest, cleared, after))


def tail(db: sqlite3.Connection, count: int) -> list[dict[str, Any]]:
    """The newest ``count`` entries, oldest first (backwards on the key: no scan)."""
    rows = db.execute("SELECT data FROM journal ORDER BY seq DESC LIMIT ?", (count,)).fetchall()
    return [json.loads(data) for (data,) in reversed(rows)]
