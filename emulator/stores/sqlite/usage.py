"""The SQLite store's usage log, as its listing and its totals read it: pages of the
``charges`` table by its ``seq`` key (each charge's own number, given by AUTOINCREMENT in the
hold's transaction: never twice, also not after a reset, which empties the table and not
``sqlite_sequence``), and the running sums per group in ``usage_sums``, moved inside the hold's
and the settlement's ``BEGIN IMMEDIATE`` transactions (``ledger``), so a step rolled back moved
nothing.

A file made before the sums were kept (version 2) has no ``usage_sums`` table: `upgrade`
makes it from the charges and the sums of those trimmed from the log (the ``trimmed`` table
versions 2 and 3 kept, which it then drops) when the store opens (one transaction, once).
"""

from __future__ import annotations

import json
import sqlite3

from ...core.billing import (
    COUNTED,
    SUMMED,
    Charge,
    Settlement,
    Sums,
    counted,
    group_of,
    sums_of,
)
from ..pages import ChargePage, new_epoch
from .paging import read_page

TABLE = """
CREATE TABLE usage_sums (
    owner TEXT NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
    tasks INTEGER NOT NULL, images INTEGER NOT NULL, paid INTEGER NOT NULL,
    taken INTEGER NOT NULL, refunded INTEGER NOT NULL, held INTEGER NOT NULL,
    PRIMARY KEY (owner, key, model, state)
) WITHOUT ROWID
"""
_ADD = (
    f"INSERT INTO usage_sums VALUES (?, ?, ?, ?, {', '.join('?' * len(COUNTED))})"
    " ON CONFLICT (owner, key, model, state) DO UPDATE SET "
    + ", ".join(f"{f} = {f} + excluded.{f}" for f in COUNTED)
)


def upgrade(db: sqlite3.Connection) -> None:
    """Make ``usage_sums`` if the file has none, from its charges and the sums of the charges
    trimmed from its log (the ``trimmed`` table of versions 2 and 3), then drop that table
    (inside the open's transaction: a file of an older version, or a new one, where there is
    nothing to sum). Version 3 kept both: its sums already count the trimmed charges."""
    trimmed = _exists(db, "trimmed")
    if not _exists(db, "usage_sums"):
        db.execute(TABLE)
        charges = [charge_of(data) for (data,) in db.execute("SELECT data FROM charges")]
        dropped: list[tuple[object, ...]] = []
        if trimmed:
            columns = ", ".join(("owner", "key", "model", "state", *SUMMED))
            dropped = db.execute(f"SELECT {columns} FROM trimmed").fetchall()
        for s in sums_of(charges, dropped):
            _add(db, (s.owner, s.key, s.model, s.state), tuple(getattr(s, f) for f in COUNTED))
    if trimmed:
        db.execute("DROP TABLE trimmed")
    # Versions 2 and 3 indexed the charges by owner for the whole log's listing by owner,
    # which no request made (it is gone): the index only cost every hold a write.
    db.execute("DROP INDEX IF EXISTS charges_owner")


def _exists(db: sqlite3.Connection, table: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return found.fetchone() is not None


def charge_of(data: str) -> Charge:
    return Charge(**json.loads(data))


def held(db: sqlite3.Connection, charge: Charge) -> None:
    """``charge`` was held (in the hold's transaction)."""
    _add(db, group_of(charge), counted(charge))


def settled(db: sqlite3.Connection, charge: Charge, end: Settlement, refunded: int) -> None:
    """The held ``charge`` ended as ``end``: its sums move to its new state's group."""
    _add(db, group_of(charge), tuple(-v for v in counted(charge)))
    moved = (1, end.images, end.amount, charge.taken, refunded, 0)
    _add(db, (charge.owner, charge.key, charge.model, end.state), moved)


def usage_sums(db: sqlite3.Connection) -> list[Sums]:
    rows = db.execute(f"SELECT owner, key, model, state, {', '.join(COUNTED)} FROM usage_sums")
    return [Sums(*row) for row in rows.fetchall()]


#: The meta row naming the charges' numbering (their seq: AUTOINCREMENT, never given twice,
#: kept by reset). Apart from the tasks' 'epoch', so that neither listing follows the other's
#: cursor.
EPOCH = "charge_epoch"


def keep_epoch(db: sqlite3.Connection) -> None:
    """Give the file a charge epoch if it has none (new, or from before it had one)."""
    db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (EPOCH, new_epoch()))


def charge_page(
    db: sqlite3.Connection, after: tuple[int, str] | None, count: int
) -> ChargePage | None:
    """`Store.charge_page` in one read transaction (`paging.read_page`): the charges' own
    epoch (`EPOCH`: a task cursor is no charge cursor), by the charges' seq."""
    select = "SELECT seq, data FROM charges WHERE seq > ? ORDER BY seq LIMIT ?"
    found = read_page(db, EPOCH, select, after, count)
    if found is None:
        return None
    rows, epoch, more = found
    last = (int(rows[-1][0]), epoch) if rows else None
    return ChargePage([charge_of(data) for _, data in rows], last, more)


def _add(db: sqlite3.Connection, group: tuple[str, str, str, str], values: tuple[int, ...]) -> None:
    db.execute(_ADD, (*group, *values))
