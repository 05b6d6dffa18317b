"""One page of a numbered SQLite table (tasks, charges, journal entries), as the listings read
it: the numbering's epoch checked against the cursor's and the rows after its number, in one
deferred (read) transaction, which writers do not wait for (WAL). Through the table's number
key, so a page costs its own rows, however many the table holds."""

from __future__ import annotations

import sqlite3
from typing import Any


def read_page(
    db: sqlite3.Connection,
    epoch_name: str,
    select: str,
    after: tuple[int, str] | None,
    count: int,
) -> tuple[list[Any], str, bool] | None:
    """At most ``count`` rows of ``select`` (a SELECT whose first parameter is the number to
    start after and whose second is its LIMIT, ordered by that number), the epoch (the meta
    row ``epoch_name``) and whether more rows follow; None when ``after`` is of another epoch."""
    own = not db.in_transaction  # a caller's transaction may hold it with other reads
    if own:
        db.execute("BEGIN")
    try:
        row = db.execute("SELECT value FROM meta WHERE name = ?", (epoch_name,)).fetchone()
        epoch = str(row[0])
        if after is not None and after[1] != epoch:
            return None
        rows = db.execute(select, (-1 if after is None else after[0], count + 1)).fetchall()
    finally:
        if own:
            db.execute("COMMIT")
    more = len(rows) > count
    del rows[count:]
    return rows, epoch, more


__all__ = ["read_page"]
