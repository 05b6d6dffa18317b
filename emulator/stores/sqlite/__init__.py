"""State in one SQLite file: the store (``store``) and its tables and atomic steps
(``ledger``)."""

from __future__ import annotations

from .store import SqliteStore

__all__ = ["SqliteStore"]
