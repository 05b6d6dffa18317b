"""A store URL that names a file the emulator did not make: another program's database is
refused and left as it was; a file of a later release is refused as one, not as an earlier."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.stores.sqlite import SqliteStore

from .served import free_port


def tables_of(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(name for (name,) in db.execute("SELECT name FROM sqlite_master"))


def test_another_programs_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users (name) VALUES ('ada')")
    with pytest.raises(
        ValueError,
        match=r"not an emulator's state file: it holds tables \(users\)",
    ):
        SqliteStore(path)
    assert tables_of(path) == ["users"]  # no emulator table was added to it


def test_a_foreign_table_named_meta_is_not_taken_for_the_emulators(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value)")
        db.execute("INSERT INTO meta VALUES ('owner', 'someone else')")
    with pytest.raises(ValueError, match="not an emulator's state file"):
        SqliteStore(path)
    assert tables_of(path) == ["meta", "sqlite_autoindex_meta_1"]


def test_serve_on_another_programs_database_exits_2_naming_the_store(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    # A free port, should the refusal fail to come (then it serves until the timeout).
    args = ["--port", str(free_port()), "--store", f"sqlite://{path}"]
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "setting 'store'" in done.stderr and "not an emulator's state file" in done.stderr
    assert tables_of(path) == ["orders"]


def test_a_file_of_a_later_release_is_refused_as_one(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID")
        db.execute("INSERT INTO meta VALUES ('schema', 99)")
    with pytest.raises(ValueError) as refused:
        SqliteStore(path)
    message = str(refused.value)
    assert "schema version 99, written by a later release" in message
    assert "earlier version" not in message
