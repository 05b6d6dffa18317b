"""The usage totals from the stores' running sums equal the whole-list formula (``totals`` over
every charge the test made: its own record, `usage_model.Ledger`) for every filter, after any
sequence of holds, settlements, trims (a usage log of two finished charges), balances, expiry
and resets, on the memory, SQLite and Redis stores; a walk of the log by pages lists each
listed charge once, in hold order; and state an older version left (a SQLite file of schema 2
or 3, a Redis prefix without the sums) is upgraded without losing a cent."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from emulator.stores.base import Store
from emulator.stores.memory import MemoryStore
from emulator.stores.redis import RedisStore
from emulator.stores.sqlite import SqliteStore

from .listings import whole_usage_log
from .old_stores import redis_prefix_of, sqlite_file_of, sqlite_tables
from .redis_server import RedisServer, running_redis
from .store_support import make_task, place
from .usage_contract import walk
from .usage_model import Ledger

OWNERS = ("owner-a", "owner-b")
MODELS = ("gpt-image-2", "NanoBanana")


class UsageMachine(RuleBasedStateMachine):
    """One store under random billing steps."""

    backend: ClassVar[str] = "memory"
    redis: ClassVar[RedisServer | None] = None
    _examples = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = tempfile.TemporaryDirectory(prefix="usage-machine-")
        self.numbers = itertools.count(1)
        self.placed: list[str] = []
        self.store: Store
        self.ledger: Ledger

    def run(self, call: Any) -> Any:
        return self.loop.run_until_complete(call)

    @initialize()
    def start(self) -> None:
        if self.backend == "sqlite":
            self.store = SqliteStore(Path(self.folder.name) / "s.db")
        elif self.backend == "redis":
            assert self.redis is not None
            prefix = f"usage-{next(self._examples)}-{time.monotonic_ns()}"
            self.store = RedisStore(self.redis.url, prefix, timeout=30.0)
        else:
            self.store = MemoryStore()
        self.store.usage_log_limit = 2
        self.ledger = Ledger(self.store)

    def teardown(self) -> None:
        if hasattr(self, "store"):
            if self.backend == "redis":
                self.run(self.store.reset())
            self.run(self.store.close())
        self.loop.close()
        self.folder.cleanup()

    @rule(
        owner=st.sampled_from(OWNERS),
        held=st.integers(0, 40),
        ends=st.integers(1, 30),
        model=st.sampled_from(MODELS),
    )
    def hold(self, owner: str, held: int, ends: int, model: str) -> None:
        task = make_task(next(self.numbers), owner=owner, processing_s=float(ends))
        placed = self.ledger.place(task, held=held, cap=6, now=0.0, model=model)
        if self.run(placed) == "placed":
            self.placed.append(task.task_id)

    @rule(pick=st.integers(0, 10**6), images=st.integers(0, 2), at=st.floats(0, 50))
    def settle(self, pick: int, images: int, at: float) -> None:
        if self.placed:
            self.run(self.ledger.settle(self.placed[pick % len(self.placed)], images, at))

    @rule(now=st.integers(0, 40))
    def settle_due(self, now: int) -> None:
        self.run(self.ledger.settle_due(float(now)))

    @rule(owner=st.sampled_from(OWNERS), amount=st.one_of(st.none(), st.integers(0, 80)))
    def set_balance(self, owner: str, amount: int | None) -> None:
        self.run(self.ledger.set_balance(owner, f"sk-{owner[-1]}…key", amount, 0.0))

    @rule(before=st.integers(0, 40))
    def expire(self, before: int) -> None:
        self.run(self.ledger.expire(float(before), 40.0))

    @rule()
    def reset(self) -> None:
        self.run(self.ledger.reset())
        self.placed.clear()

    @invariant()
    def totals_and_pages_agree_with_the_whole_log(self) -> None:
        if not hasattr(self, "store"):
            return
        self.run(self.ledger.check())  # the whole log too, by pages of 1,000
        listed = [c.task_id for c in self.run(whole_usage_log(self.store))]
        assert self.run(walk(self.store, 2)) == listed


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.mark.parametrize(("backend", "examples"), [("memory", 60), ("sqlite", 25), ("redis", 15)])
def test_usage_totals_equal_the_whole_log_formula_under_random_steps(
    backend: str, examples: int, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("redis_server") if backend == "redis" else None
    machine = type(
        f"{backend.title()}UsageMachine", (UsageMachine,), {"backend": backend, "redis": server}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_a_redis_prefix_from_before_the_sums_gets_them_from_its_log(
    redis_server: RedisServer,
) -> None:
    from redis.asyncio import Redis

    prefix = f"usage-old-{time.monotonic_ns()}"

    async def trimmed_keys(client: Redis) -> list[bytes]:
        return [k async for k in client.scan_iter(match=f"{prefix}:trimmed:*")]

    async def scenario() -> None:
        store = RedisStore(redis_server.url, prefix, timeout=30.0)
        store.usage_log_limit = 2
        ledger = Ledger(store)
        await ledger.set_balance("owner-b", "sk-b…key", 100)
        for i in range(1, 8):
            await ledger.place(make_task(i, owner=OWNERS[i % 2]), held=i)
        for i in range(1, 6):
            await ledger.settle(make_task(i).task_id, i % 3, float(i))
        expected = sorted(await store.usage_sums(), key=repr)
        client = Redis.from_url(redis_server.url)
        kept = [k async for k in client.scan_iter(match=f"{prefix}:usage:*")]
        assert len(kept) == 7  # six sums and the mark
        assert await trimmed_keys(client) == []  # three charges trimmed, and no sums of them
        # What a version before the running sums left: the log, and the sums of the charges
        # trimmed from it (those the test made and the log no longer lists), no running sums.
        trimmed = ledger.trimmed(await whole_usage_log(store))
        assert len(trimmed) == 3
        await redis_prefix_of(client, prefix, trimmed)
        assert sorted(await store.usage_sums(), key=repr) == expected  # built on first read
        assert await trimmed_keys(client) == []  # and the old sums gone with it
        await ledger.check()
        await ledger.settle(make_task(6).task_id, 1, 9.0)  # and kept from then on
        await ledger.check()
        # Built too when a hold or a settlement comes first (before it moves a sum).
        await redis_prefix_of(client, prefix, ledger.trimmed(await whole_usage_log(store)))
        await ledger.place(make_task(9), held=3)
        await ledger.settle(make_task(7).task_id, 2, 9.0)
        await ledger.check()
        assert await trimmed_keys(client) == []
        await client.aclose()
        await store.reset()
        await store.close()

    asyncio.run(scenario())


def test_a_hold_whose_caller_gave_up_during_the_build_of_the_sums_does_not_happen(
    redis_server: RedisServer,
) -> None:
    # An older prefix with 30,000 held charges and no sums: the first write builds them
    # (~0.3 s), far past a deadline of half a 50 ms timeout. The caller is answered 503; the
    # hold must then not happen (the build alone may: repeating it is a no-op).
    from redis.asyncio import Redis

    from emulator.errors import StoreUnavailable

    prefix = f"usage-late-{time.monotonic_ns()}"
    held = 30_000

    async def scenario() -> None:
        client = Redis.from_url(redis_server.url)
        pipe = client.pipeline(transaction=False)
        for i in range(held):
            charge = {"owner": "o", "key": "k", "model": "m", "state": "held", "held": 6}
            charge |= {"images": 0, "amount": 0, "taken": 0, "refunded": 0}
            pipe.hset(f"{prefix}:charge:x{i}", mapping=charge)
            pipe.zadd(f"{prefix}:charges", {f"x{i}": i + 1})
        await pipe.execute()
        hasty = RedisStore(redis_server.url, prefix, timeout=0.05)
        task = make_task(7)
        with pytest.raises(StoreUnavailable):
            await place(hasty, task)
        patient = RedisStore(redis_server.url, prefix, timeout=30.0)
        # Redis answers nothing else before the script ends: it has ended, with the build.
        assert await client.exists(f"{prefix}:usage:ready")
        assert await patient.get_task(task.task_id) is None
        assert await patient.get_charge(task.task_id) is None
        (row,) = await patient.usage_sums()
        assert (row.tasks, row.held) == (held, 6 * held)  # built once, and only that
        assert await place(patient, task) == "placed"
        await patient.reset()
        await client.aclose()
        await hasty.close()
        await patient.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("version", [2, 3])
def test_a_sqlite_file_of_an_older_schema_is_upgraded_without_losing_a_cent(
    tmp_path: Path, version: int
) -> None:
    asyncio.run(_sqlite_of_an_older_schema(tmp_path, version))


async def _sqlite_of_an_older_schema(tmp_path: Path, version: int) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.usage_log_limit = 2
    ledger = Ledger(store)
    await ledger.set_balance("owner-b", "sk-b…key", 100)
    for i in range(1, 8):
        await ledger.place(make_task(i, owner="owner-a" if i % 2 else "owner-b"), held=i)
    for i in range(1, 6):
        await ledger.settle(make_task(i).task_id, i % 3, float(i))
    expected = sorted(await store.usage_sums(), key=repr)
    trimmed = ledger.trimmed(await whole_usage_log(store))
    assert len(trimmed) == 3
    await store.close()
    assert sqlite_tables(path)[0] == 4 and not {"trimmed", "charges_owner"} & sqlite_tables(path)[1]
    # As that version left it: the sums of the charges trimmed from the log in a table of their
    # own, which version 3 kept beside the running sums (they count those charges already),
    # and version 2 instead of them.
    sqlite_file_of(path, version, trimmed)
    again = SqliteStore(path)
    again.usage_log_limit = 2
    ledger.store = again
    assert sorted(await again.usage_sums(), key=repr) == expected
    # Upgraded: version 4 now, which the versions before refuse (they would write to the table
    # of trimmed sums, or not move the running sums), and that table is gone.
    schema, tables = sqlite_tables(path)
    assert schema == 4 and not {"trimmed", "charges_owner"} & tables and "usage_sums" in tables
    await ledger.check()
    await ledger.settle(make_task(6).task_id, 1, 9.0)
    await ledger.check()
    await again.close()
    opened = SqliteStore(path)  # and opened once more, the same (nothing built twice)
    ledger.store = opened
    opened.usage_log_limit = 2
    await ledger.check()
    await opened.close()
