"""The store contract for the in-memory and SQLite backends, and what only SQLite promises."""

from __future__ import annotations

import dataclasses
import math
import random
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator.sqlite_store import SqliteStore
from emulator.store import MemoryStore, Store, open_store

from .store_contract import StoreContract, gather, make_charge, make_rule, make_task


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Store:
        return MemoryStore()


class _DefaultExpiry(MemoryStore):
    """MemoryStore with the ABC's generic ``expire``, as a backend that does not override it."""

    expire = Store.expire


class TestDefaultExpiry(StoreContract):
    @pytest.fixture
    def store(self) -> Store:
        return _DefaultExpiry()


class TestSqliteStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = SqliteStore(tmp_path / "state" / "emulator.db")
        yield store
        await store.close()


pytestmark = [pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_sqlite_keeps_every_kind_of_state_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "emulator.db"
    first = SqliteStore(path)
    task = make_task(1)
    await first.insert_task(task)
    await first.count_poll(task.task_id)
    await first.put_blob(f"ref:{task.task_id}", b"\x89PNG\r\n")
    await first.advance_clock(42.25)
    await first.add_fault(make_rule("a", times=3))
    await first.claim_fault("a", 3)
    await first.count_fault_evaluation("a")
    await first.append_journal({"path": "/v1/images/tasks"}, 10)
    await first.set_balance("owner-a", "sk-a…", 10)
    await first.hold(make_charge(1, held=4))
    await first.close()

    again = SqliteStore(path)
    try:
        assert await again.get_task(task.task_id) == dataclasses.replace(task, polls=1)
        assert await again.get_blob(f"ref:{task.task_id}") == b"\x89PNG\r\n"
        assert await again.clock_now() == 42.25
        assert await again.list_faults() == [make_rule("a", times=3)]
        assert await again.fault_hits() == {"a": 1}
        assert await again.count_fault_evaluation("a") == 2
        assert [e["path"] for e in await again.list_journal()] == ["/v1/images/tasks"]
        assert await again.append_journal({}, 10) == 2
        assert await again.list_balances() == {"owner-a": ("sk-a…", 6)}
        assert await again.list_charges() == [make_charge(1, held=4)]
        # The claim budget survives too: two hits of three are left.
        assert [await again.claim_fault("a", 3) for _ in range(3)] == [True, True, False]
    finally:
        await again.close()


async def test_two_connections_to_one_file_share_atomic_counters(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    one, two = SqliteStore(path), SqliteStore(path)
    try:
        await one.add_fault(make_rule("a", times=5))
        await one.set_balance("owner-a", "sk-a…", 9)
        claims = await gather(*(s.claim_fault("a", 5) for s in [one, two] * 10))
        holds = await gather(
            *(s.hold(make_charge(i, held=2)) for i, s in enumerate([one, two] * 5))
        )
        assert claims.count(True) == 5
        assert holds.count(True) == 4
        assert await two.list_balances() == {"owner-a": ("sk-a…", 1)}
        await one.insert_task(make_task(7))
        assert not await two.insert_task(make_task(7))
    finally:
        await one.close()
        await two.close()


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "wal.db")
    await store.close()
    with sqlite3.connect(tmp_path / "wal.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID")
        db.execute("INSERT INTO meta VALUES ('schema', 99)")
    with pytest.raises(ValueError, match="schema version 99"):
        SqliteStore(path)


def test_an_unopenable_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot be opened"):
        SqliteStore(blocker / "emulator.db")


async def test_open_store_dispatches_on_the_url(tmp_path: Path) -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    store = open_store(f"sqlite://{tmp_path}/a/b.db")
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "a" / "b.db"
    await store.close()
    for bad in ("postgres://x", "sqlite://", "sqlite:///dir/", "mem"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            open_store(bad)


async def test_sqlite_hands_out_a_new_id_stream_per_opening_even_after_reset(
    tmp_path: Path,
) -> None:
    path = tmp_path / "streams.db"
    first = SqliteStore(path)
    assert await first.claim_id_stream() == 0
    await first.reset()
    await first.close()
    again = SqliteStore(path)
    try:
        assert await again.claim_id_stream() == 1
    finally:
        await again.close()


@pytest.mark.parametrize("seed", range(6))
async def test_memory_expiry_removes_what_the_default_removes_in_the_same_order(seed: int) -> None:
    """The memory store's heap-based ``expire`` against the ABC's plain one, over random
    stores with tied ends, forced outcomes (ends moved) and removals."""
    rng = random.Random(seed)
    fast, plain = MemoryStore(), _DefaultExpiry()
    number = 0
    for _ in range(12):
        for _ in range(rng.randint(0, 30)):
            number += 1
            created = float(rng.randint(0, 20))  # few distinct times: many ties
            task = make_task(number, created_at=created, queued_s=rng.choice([0.0, 1.0]))
            assert await fast.insert_task(task) == await plain.insert_task(task)
        tasks = await plain.list_tasks()
        for task in rng.sample(tasks, k=min(len(tasks), rng.randint(0, 3))):
            if rng.random() < 0.5:
                moved = dataclasses.replace(
                    task, schedule=task.schedule.ending_now(rng.choice([0.0, 5.0, 50.0]), "failed")
                )
                assert await fast.replace_task(moved) == await plain.replace_task(moved)
            else:
                assert await fast.remove_task(task.task_id) == await plain.remove_task(task.task_id)
        now = float(rng.randint(0, 60))
        before = now - rng.choice([10.0, 30.0, math.inf])
        keep = rng.choice([None, 0, 5, 20])
        got, want = await fast.expire(before, now, keep), await plain.expire(before, now, keep)
        assert [t.task_id for t in got.removed] == [t.task_id for t in want.removed]
        assert got.remaining == want.remaining
        assert [t.task_id for t in await fast.list_tasks()] == [
            t.task_id for t in await plain.list_tasks()
        ]
