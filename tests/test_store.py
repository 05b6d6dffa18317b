"""The store contract for the in-memory and SQLite backends, and what only SQLite promises."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from emulator import Settings
from emulator.core.billing import Charge, Settlement
from emulator.stores import Store, open_store
from emulator.stores.base import EVICT_AT_MOST, evictions_due, room_after_eviction
from emulator.stores.memory import MemoryStore
from emulator.stores.memory import store as memory_store
from emulator.stores.memory.packed import pack_charge
from emulator.stores.sqlite import SqliteStore
from emulator.usecases.emulator import Emulator

from .listings import whole_journal, whole_usage_log
from .store_contract import StoreContract, store_options
from .store_support import gather, make_charge, make_rule, make_task, place


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self, request: pytest.FixtureRequest) -> Store:
        return MemoryStore(**store_options(request))

    @pytest.fixture
    def renumbered(self) -> Callable[[Store], Awaitable[Store]]:
        async def restarted(store: Store) -> Store:
            return MemoryStore()  # the emulator restarted: a new store, numbered from 0

        return restarted


class TestSqliteStore(StoreContract):
    @pytest.fixture
    async def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
        store = SqliteStore(tmp_path / "state" / "emulator.db", **store_options(request))
        yield store
        await store.close()

    @pytest.fixture
    async def renumbered(
        self, tmp_path: Path
    ) -> AsyncIterator[Callable[[Store], Awaitable[Store]]]:
        opened: list[Store] = []

        async def another_file(store: Store) -> Store:
            opened.append(SqliteStore(tmp_path / "other" / "emulator.db"))
            return opened[-1]

        yield another_file
        for other in opened:
            await other.close()


pytestmark = [pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_memory_poll_count_copies_every_other_field_of_the_task() -> None:
    # Every field a value no other field has: a field the copy missed or put in another's
    # place shows as a difference (the memory store copies the task field by field).
    task = dataclasses.replace(
        make_task(1), aspect_ratio="4:3", polls=4, token="tok-1", finished_at=12.5
    )
    values = [getattr(task, field.name) for field in dataclasses.fields(task)]
    assert len({repr(value) for value in values}) == len(values)
    store = MemoryStore()
    await place(store, task)
    polled = await store.count_poll(task.task_id)
    assert polled == dataclasses.replace(task, polls=5)
    assert type(polled) is type(task)


def test_a_memory_settlement_copies_every_other_field_of_the_charge() -> None:
    # As for the poll count: the settled charge is packed field by field (a pure step of the
    # store, called here with values a store would not hold together, so that every field's
    # value differs from every other's and a missed or misplaced one shows).
    charge = Charge(
        "task_s", "owner-s", "sk-s…key", 1.25, "gpt-image-2", "2K", "high", 3, 7, 21, taken=17
    )
    end = Settlement("settled", 2, 14, 3)
    expected = dataclasses.replace(
        charge, state="settled", images=2, amount=14, settled_at=9.5, refunded=4
    )
    values = [getattr(expected, field.name) for field in dataclasses.fields(expected)]
    assert len({repr(value) for value in values}) == len(values)
    settled = memory_store._settled(pack_charge(charge), end, 9.5, 4)
    assert settled == pack_charge(expected) and type(settled) is tuple


async def test_sqlite_keeps_every_kind_of_state_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "emulator.db"
    first = SqliteStore(path)
    first.usage_log_limit = 1
    task, polled = make_task(1), make_task(2, steps=1)
    await first.set_balance("owner-a", "sk-a…", 10)
    await place(first, task, held=4, blob=b"\x89PNG\r\n")
    await place(first, polled, held=2)
    await first.count_poll(task.task_id)
    await first.count_poll(polled.task_id, now=7.5)
    await first.settle(polled.task_id, 1, 7.5)
    await place(first, make_task(3), held=0)
    await first.settle(make_task(3).task_id, 0, 8.0)  # pushes task 2's charge out of the log
    await first.advance_clock(42.25)
    await first.add_fault(make_rule("a", times=3))
    await first.claim_fault("a", 3)
    await first.count_fault_evaluation("a")
    await first.append_journal({"path": "/v1/images/tasks"}, 10)
    await first.close()

    again = SqliteStore(path)
    try:
        assert await again.get_task(task.task_id) == dataclasses.replace(task, polls=1)
        ended = dataclasses.replace(polled, polls=1, finished_at=7.5)
        assert await again.get_task(polled.task_id) == ended
        assert await again.get_blob(f"ref:{task.task_id}") == b"\x89PNG\r\n"
        assert await again.clock_now() == 42.25
        assert await again.list_faults() == [make_rule("a", times=3)]
        assert await again.fault_hits() == {"a": 1}
        assert await again.count_fault_evaluation("a") == 2
        assert [e["path"] for e in await whole_journal(again)] == ["/v1/images/tasks"]
        await again.append_journal({}, 10)
        assert [e["seq"] for e in await whole_journal(again)] == [1, 2]
        assert await again.list_balances() == {"owner-a": ("sk-a…", 5)}
        held = dataclasses.replace(make_charge(1, held=4), taken=4)
        assert [c for c in await whole_usage_log(again) if c.state == "held"] == [held]
        # Task 2's charge left the log; its sums stay in the totals.
        (settled,) = [s for s in await again.usage_sums() if s.state == "settled"]
        assert (settled.tasks, settled.paid, settled.taken, settled.refunded) == (1, 1, 2, 1)
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
            *(place(s, make_task(i), held=2, cap=3) for i, s in enumerate([one, two] * 5))
        )
        assert claims.count(True) == 5
        assert (holds.count("placed"), holds.count("full")) == (3, 7)
        assert await two.list_balances() == {"owner-a": ("sk-a…", 3)}
        assert await place(one, make_task(70), held=2) == "placed"
        assert await place(two, make_task(70), held=2) == "taken"
    finally:
        await one.close()
        await two.close()


async def test_a_sqlite_file_from_before_numbering_epochs_gets_one_kept_across_reopens(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await place(store, make_task(1))
    await place(store, make_task(2))
    await store.close()
    with sqlite3.connect(path) as db:  # a file of the same schema, written before epochs
        db.execute("DELETE FROM meta WHERE name = 'epoch'")
    db.close()
    store = SqliteStore(path)
    first = await store.task_page(None, 1)
    await store.close()
    assert first is not None and first.last is not None
    store = SqliteStore(path)
    try:
        rest = await store.task_page(first.last, 10)
        assert rest is not None and [t.task_id for t in rest.tasks] == [make_task(2).task_id]
    finally:
        await store.close()


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


def test_a_full_store_keeps_all_but_a_tenth_of_its_cap_at_least_one_at_most_its_bound() -> None:
    assert [room_after_eviction(cap, 7) for cap in (1, 5, 10, 60, 110, 10_000)] == [
        0,
        4,
        9,
        54,
        103,
        9_993,
    ]
    assert room_after_eviction(10_010, EVICT_AT_MOST) == 9_010


async def test_the_emulator_opens_its_store_with_the_default_eviction_bound(
    tmp_path: Path,
) -> None:
    # What production runs with: the default bound (the contract proves a store obeys the
    # bound it is given, with a small one; here, that the factory gives this one).
    assert EVICT_AT_MOST == 1_000
    assert Emulator(Settings(seed=1)).store.evict_at_most == EVICT_AT_MOST
    assert MemoryStore().evict_at_most == EVICT_AT_MOST
    store = open_store(f"sqlite://{tmp_path}/a.db")
    assert store.evict_at_most == EVICT_AT_MOST
    await store.close()
    assert open_store("memory", evict_at_most=3).evict_at_most == 3


@pytest.mark.parametrize(
    ("bound", "rule"),
    [
        (0, "at least 1"),
        (-5, "at least 1"),
        (True, "an integer"),
        (2.5, "an integer"),
        ("7", "an integer"),
        (None, "an integer"),
    ],
)
async def test_a_store_refuses_an_eviction_bound_that_is_not_a_positive_integer(
    tmp_path: Path, bound: object, rule: str
) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(ValueError, match=f"evict_at_most must be {rule}"):
        MemoryStore(evict_at_most=bound)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"evict_at_most must be {rule}"):
        SqliteStore(path, evict_at_most=bound)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"evict_at_most must be {rule}"):
        open_store(f"sqlite://{path}", evict_at_most=bound)  # type: ignore[arg-type]
    assert not path.exists()  # refused before the file (or its thread) was made


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


async def test_a_sqlite_store_answers_while_every_shared_worker_thread_is_taken(
    tmp_path: Path,
) -> None:
    """Rendering downloads fill anyio's shared worker-thread limiter; the store has its own."""
    store = SqliteStore(tmp_path / "busy.db")
    limiter = anyio.to_thread.current_default_thread_limiter()
    borrowers = [object() for _ in range(int(limiter.total_tokens))]
    for borrower in borrowers:
        await limiter.acquire_on_behalf_of(borrower)
    try:
        with anyio.fail_after(5):  # a safety net: the unchanged store waits for a free token
            assert await store.clock_now() == 0.0
    finally:
        for borrower in borrowers:
            limiter.release_on_behalf_of(borrower)
        await store.close()


def test_one_step_evicts_at_most_the_bound_even_above_a_lowered_cap() -> None:
    # At the cap: down to a tenth below it (or the bound); above a lowered cap: the bound.
    assert evictions_due(110, 110, 7) == 7
    assert evictions_due(60, 60, 7) == 6
    assert evictions_due(100_000, 1_000, EVICT_AT_MOST) == EVICT_AT_MOST
    assert evictions_due(100_000, 100_000, EVICT_AT_MOST) == EVICT_AT_MOST
    assert evictions_due(5, 5, EVICT_AT_MOST) == 1


async def test_the_memory_order_index_sheds_removed_tasks_and_pages_stay_exact() -> None:
    # Rounds of 1,000 tasks, 900 of each removed by expiry: the index of positions drops the
    # removed ones (bounded by the stored count and a slack of 1,024), and pages list exactly
    # the stored tasks, in order, across its rebuilds.
    store = MemoryStore()
    kept: list[str] = []
    for round_ in range(6):
        # A cursor taken before this round's removals (and the index's rebuilds) still leads
        # to exactly the tasks after it.
        before = await store.task_page(None, len(kept)) if kept else None
        earlier = len(kept)
        for i in range(1_000):
            number = round_ * 1_000 + i
            task = make_task(number, created_at=float(round_), processing_s=1e9 if i < 100 else 2.0)
            assert await place(store, task, now=float(round_)) == "placed"
            kept += [task.task_id] if i < 100 else []
        await store.expire(finished_before=round_ + 10.0, now=round_ + 10.0)
        if before is not None:
            rest = await store.task_page(before.last, 1_000)
            assert rest is not None and [t.task_id for t in rest.tasks] == kept[earlier:]
        listed, after = [], None
        while True:
            page = await store.task_page(after, 64)
            assert page is not None
            listed += [t.task_id for t in page.tasks]
            if not page.more:
                break
            after = page.last
        assert listed == kept
    order = store._order  # the index itself: its size is what this test bounds
    assert len(order._ids) == len(order._numbers) <= len(kept) + 1_024 + 1


async def test_the_memory_journal_keeps_its_bound_and_cuts_what_it_dropped_in_batches() -> None:
    # The memory store cuts dropped entries off in batches (stores/memory/journal.py): reads
    # see exactly what a journal trimmed at every append keeps (the model: a deque), also
    # when the bound rises after entries were dropped but not yet cut off, and the list holds
    # at most an eighth more than the bound (at least 64, at most 8,192).
    store = MemoryStore()
    model: deque[int] = deque()
    bounds = [10] * 300 + [1_000] * 1_500 + [3] * 100 + [0] * 5 + [7] * 9 + [200] * 300
    for i, limit in enumerate(bounds):
        await store.append_journal({"i": i}, limit)
        model.append(i + 1)
        while len(model) > limit:
            model.popleft()
        kept = await whole_journal(store)
        assert [e["seq"] for e in kept] == list(model)
        held = len(store._journal._items)
        assert held <= limit + min(max(64, limit // 8), 8_192)
        page = await store.journal_page(None, 1_000)
        assert page is not None and page.entries == kept[:1_000]
