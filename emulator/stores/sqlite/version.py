"""Which schema version a SQLite file holds, and why a file is refused: a file of another
program, or of a schema version this release cannot read (an earlier one's or a later one's)."""

from __future__ import annotations

import sqlite3
from typing import Any

from . import ledger


def of_file(db: sqlite3.Connection) -> Any:
    """The file's schema version, or None for a new (empty) file. ValueError for a file with
    tables but no version: another program's database (a mistyped path), which the emulator
    would otherwise fill with its tables, and a reset would then empty those of the same name."""
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    row = None
    if "meta" in tables:
        row = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
    if row is None and tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ValueError(
            f"not an emulator's state file: it holds tables ({shown}) but no emulator schema"
            " version; point the store at a file of its own (a missing one is created)"
        )
    return None if row is None else row[0]


def refusal(version: Any) -> str:
    """Why a file of another schema version is refused: one from a later release is not said
    to be an earlier one's (running that release is the remedy)."""
    readable = f"this emulator reads versions {min(ledger.UPGRADABLE)}-{ledger.SCHEMA_VERSION}"
    if isinstance(version, int) and version > ledger.SCHEMA_VERSION:
        return (
            f"schema version {version}, written by a later release of the emulator ({readable}):"
            " run that release on it, use another file, or delete this one"
        )
    return (
        f"schema version {version}, {readable} (the state of an earlier version cannot be"
        " carried over: use another file, or delete this one)"
    )


__all__ = ["of_file", "refusal"]
