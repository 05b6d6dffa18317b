"""The Redis backend against a real redis-server: the store contract, and what only a shared
store must add (atomic across separate connections, one round trip per operation, isolation by
prefix, a clear 503-style error when Redis is away)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from emulator.errors import StoreUnavailable
from emulator.stores import Store, open_store
from emulator.stores.base import EVICT_AT_MOST
from emulator.stores.redis import RedisStore
from emulator.stores.redis.support import counting_connection
from emulator.stores.redis.values import TaskReader, task_of

from .listings import whole_journal, whole_usage_log
from .redis_server import RedisServer, free_port, running_redis
from .store_contract import StoreContract, store_options
from .store_support import gather, make_charge, make_rule, make_task, place

pytestmark = [pytest.mark.anyio]
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _prefix() -> str:
    return f"test{next(_prefixes)}-{time.monotonic_ns()}"


class TestRedisStore(StoreContract):
    @pytest.fixture
    async def store(
        self, request: pytest.FixtureRequest, redis_server: RedisServer
    ) -> AsyncIterator[Store]:
        # The contract proves atomicity, not latency: 25 concurrent calls open 25 connections,
        # and on a loaded 2-core machine a connect can take longer than the 1 s default (seen:
        # "Timeout connecting to server"). The timeout's own behaviour is tested below.
        store = RedisStore(redis_server.url, _prefix(), timeout=10.0, **store_options(request))
        yield store
        await store.reset()
        await store.close()

    @pytest.fixture
    def renumbered(self, redis_server: RedisServer) -> Callable[[Store], Awaitable[Store]]:
        async def wiped(store: Store) -> Store:
            # FLUSHDB: the task counter and everything else of the prefix gone (this worker's
            # own server: no other test's keys live there while this one runs).
            client = Redis.from_url(redis_server.url)
            try:
                await client.flushdb()
            finally:
                await client.aclose()
            return store

        return wiped


class TestRedisStoreOnUvloop(TestRedisStore):
    """The contract again on uvloop, the loop `serve` runs on when it is installed: its timers
    differ from asyncio's (call_at answers a plain Handle, without when(), for a deadline
    passed or under a millisecond away), which once made a Redis stall a 500 under serve
    only."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, bool]]:
        return ("asyncio", {"use_uvloop": True})

    async def test_these_run_on_uvloop(self) -> None:
        import asyncio

        import uvloop

        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


@pytest.fixture
async def workers(redis_server: RedisServer) -> AsyncIterator[list[RedisStore]]:
    """Four stores on one prefix, each with its own connection pool: four workers' views."""
    prefix = _prefix()
    stores = [RedisStore(redis_server.url, prefix, timeout=10.0) for _ in range(4)]
    yield stores
    await stores[0].reset()
    for store in stores:
        await store.close()


async def test_stores_with_different_eviction_bounds_share_one_redis(
    redis_server: RedisServer,
) -> None:
    """The bound is the script's argument, not its text: one script serves every bound, and
    each store evicts by its own (a script baked with the first store's bound would not)."""
    stores = [
        RedisStore(redis_server.url, _prefix(), timeout=10.0, evict_at_most=b) for b in (7, 3)
    ]
    try:
        for store in stores:
            for i in range(110):  # a tenth: 11, above both bounds
                assert await place(store, make_task(i), cap=110) == "placed"
        for store in stores:
            assert await place(store, make_task(110), cap=110, now=5.0) == "placed"
        assert [len(await store.list_tasks()) for store in stores] == [104, 108]
    finally:
        for store in stores:
            await store.reset()
            await store.close()


async def test_fault_times_hold_across_separate_connections(workers: list[RedisStore]) -> None:
    await workers[0].add_fault(make_rule("a", times=3))
    taken = await gather(*(workers[i % 4].claim_fault("a", 3) for i in range(40)))
    assert taken.count(True) == 3
    assert await workers[3].fault_hits() == {"a": 3}


async def test_the_cap_holds_across_separate_connections(workers: list[RedisStore]) -> None:
    placed = await gather(*(place(workers[i % 4], make_task(i), cap=9) for i in range(40)))
    assert (placed.count("placed"), placed.count("full")) == (9, 31)
    assert len(await workers[2].list_tasks()) == 9


async def test_each_poll_counts_once_across_separate_connections(
    workers: list[RedisStore],
) -> None:
    task = make_task(1)
    await place(workers[0], task)
    polled = await gather(*(workers[i % 4].count_poll(task.task_id) for i in range(40)))
    assert sorted(t.polls for t in polled) == list(range(1, 41))


async def test_only_one_insert_of_an_id_wins_across_separate_connections(
    workers: list[RedisStore],
) -> None:
    won = await gather(*(place(w, make_task(7)) for w in workers for _ in range(5)))
    assert won.count("placed") == 1


async def test_submissions_place_only_what_the_balance_covers_across_connections(
    workers: list[RedisStore],
) -> None:
    await workers[0].set_balance("owner-a", "sk-a…", 20)
    placed = await gather(
        *(place(workers[i % 4], make_task(i), held=3, blob=b"ref") for i in range(40))
    )
    assert (placed.count("placed"), placed.count("refused")) == (6, 34)
    kept = {t.task_id for t in await workers[1].list_tasks()}
    assert kept == {make_task(i).task_id for i, p in enumerate(placed) if p == "placed"}
    assert len(await whole_usage_log(workers[2])) == 6  # a refused task left nothing behind
    refused = make_task(placed.index("refused")).task_id
    assert await workers[3].get_blob(f"ref:{refused}") is None


async def test_a_reference_picture_lives_and_goes_with_its_task(workers: list[RedisStore]) -> None:
    store = workers[0]
    assert await place(store, make_task(1), blob=b"picture") == "placed"
    assert await place(store, make_task(1), blob=b"other") == "taken"
    key = f"ref:{make_task(1).task_id}"
    assert await store.get_blob(key) == b"picture"
    assert await store._redis.ttl(f"{store.prefix}:blob:{key}") == -1  # no TTL of its own
    await store.expire(finished_before=1e9, now=1e9)
    assert await store.get_blob(key) is None and await store.list_tasks() == []


async def test_id_streams_are_distinct_and_survive_reset(workers: list[RedisStore]) -> None:
    streams = await gather(*(w.claim_id_stream() for w in workers))
    assert sorted(streams) == [0, 1, 2, 3]
    await workers[0].reset()
    assert await workers[1].claim_id_stream() == 4


async def test_workers_racing_to_claim_the_clock_all_get_the_one_kept(
    workers: list[RedisStore],
) -> None:
    # Each worker on its own connections: the claims reach Redis interleaved, and still
    # every worker reads the mode of the one SET that came first.
    modes = ("manual", "real", "per_poll", "real") * 5
    kept = await gather(*(workers[i % 4].claim_clock(m) for i, m in enumerate(modes)))
    assert kept == [kept[0]] * len(modes)
    assert await workers[2]._redis.get(f"{workers[2].prefix}:clock_mode") == kept[0].encode()
    await workers[0].reset()
    assert await workers[3].claim_clock("manual" if kept[0] != "manual" else "real") == kept[0]


async def test_prefixes_keep_emulators_apart(redis_server: RedisServer) -> None:
    one, two = RedisStore(redis_server.url, _prefix()), RedisStore(redis_server.url, _prefix())
    try:
        await place(one, make_task(1))
        await one.advance_clock(5)
        await two.add_fault(make_rule("b"))
        assert await two.list_tasks() == [] and await two.clock_now() == 0.0
        assert await one.list_faults() == []
        await two.reset()
        assert [t.task_id for t in await one.list_tasks()] == [make_task(1).task_id]
        assert await one.clock_now() == 5.0
    finally:
        for store in (one, two):
            await store.reset()
            await store.close()


async def test_every_operation_is_one_round_trip(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, _prefix())
    task = make_task(1)

    def operations() -> list[Any]:
        return [
            store.insert_held(task, make_charge(1), b"ref", cap=10, now=None),
            store.get_task(task.task_id),
            store.count_poll(task.task_id),
            store.force_end(task, 0.0),
            store.clock_now(),
            store.advance_clock(1),
            store.claim_clock("manual"),
            store.add_fault(make_rule("a", times=2)),
            store.list_faults(),
            store.count_fault_evaluation("a"),
            store.claim_fault("a", 2),
            store.journal_page(None, 10),
            store.journal_tail(10),
            store.settle(task.task_id, 1, 2.0),
            store.settle_due(5.0),
            store.set_balance("owner-a", "sk-a…", 3),
            store.expire(-1.0, 0.0),
            store.put_blob("k", b"x"),
            store.charge_page(None, 10),
            store.charge_tail(10),
        ]

    try:
        for operation in operations():  # a fresh Redis learns each script on first use
            await operation
        await store.reset()
        for operation in operations():
            before = store.round_trips
            await operation
            assert store.round_trips - before == 1, operation
        # A journal entry costs the request nothing: it is written behind, many per round trip
        # (tests/test_scaling.py counts the batches).
        before = store.round_trips
        await store.append_journal({"i": 1}, 10)
        assert store.round_trips == before
        assert [e["i"] for e in await whole_journal(store)] == [1]
    finally:
        await store.reset()
        await store.close()


async def test_journal_entries_written_together_keep_each_its_own_limit(
    redis_server: RedisServer,
) -> None:
    # Entries queued meanwhile go to Redis in one script call; each is numbered and trimmed
    # as if it had been appended alone.
    store = RedisStore(redis_server.url, _prefix())
    try:
        for i, limit in enumerate([5, 5, 5, 5, 2, 5], start=1):
            await store.append_journal({"i": i}, limit)
        before = store.round_trips
        first = await whole_journal(store)
        assert store.round_trips - before == 2  # the batch, then the read
        await store.append_journal({"i": 7}, 0)
        await store.append_journal({"i": 8}, 3)
        second = await whole_journal(store)
        assert first == [{"i": 4, "seq": 4}, {"i": 5, "seq": 5}, {"i": 6, "seq": 6}]
        assert second == [{"i": 8, "seq": 8}]
    finally:
        await store.reset()
        await store.close()


async def test_blobs_over_the_cap_are_not_kept_and_others_expire(
    redis_server: RedisServer,
) -> None:
    store = RedisStore(redis_server.url, _prefix(), max_blob_bytes=10, blob_ttl=60)
    try:
        await store.put_blob("small", b"0123456789")
        await store.put_blob("big", b"01234567890")
        assert await store.get_blob("small") == b"0123456789"
        assert await store.get_blob("big") is None
        assert 0 < await store._redis.ttl(f"{store.prefix}:blob:small") <= 60
    finally:
        await store.reset()
        await store.close()


async def test_unreachable_redis_is_a_quick_store_unavailable() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", "nowhere", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await store.get_task("task_x")
    assert caught.value.status_code == 503
    assert time.monotonic() - started < 2.0
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()


async def test_a_hung_redis_is_a_store_unavailable_after_the_timeout_not_a_hang() -> None:
    server = RedisServer().start()
    store = RedisStore(server.url, "hung", timeout=0.5)
    assert server.process is not None
    try:
        await place(store, make_task(1))
        os.kill(server.process.pid, signal.SIGSTOP)  # accepts nothing, answers nothing
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.get_task(make_task(1).task_id)
            assert time.monotonic() - started < 3.0  # timeout, one retry, timeout
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert await store.get_task(make_task(1).task_id) == make_task(1)
    finally:
        await store.close()
        server.remove()


async def test_a_script_timed_out_on_a_hung_redis_leaves_no_answer_for_a_later_call() -> None:
    # Scripts go over the store's own connections: one whose answer did not come in time must
    # not be reused, or the late answer (here a LATE refusal and an empty rule list) would be
    # read as the answer to the next call.
    server = RedisServer().start()
    store = RedisStore(server.url, "hung-script", timeout=0.5)
    assert server.process is not None
    task = make_task(1)
    try:
        await place(store, task)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.count_poll(task.task_id)
            with pytest.raises(StoreUnavailable):
                await store.list_faults()  # a read: tried twice
            assert time.monotonic() - started < 4.0
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        await store.add_fault(make_rule("a"))
        assert [rule.id for rule in await store.list_faults()] == ["a"]
        counted = await store.count_poll(task.task_id)
        assert counted is not None and counted.polls == 1  # the late poll did not count
    finally:
        await store.close()
        server.remove()


def test_a_task_decoded_once_is_read_back_with_each_reads_own_polls_and_end() -> None:
    # The store decodes a task's JSON once and copies the result per read: no read may see
    # another read's polls, end or forced schedule, and the reads equal a full decode.
    task = make_task(1, steps=3)
    stored = {k: v for k, v in task.to_dict().items() if k not in ("polls", "finished_at")}
    data = json.dumps(stored)
    forced = json.dumps(make_task(2, queued_s=0.5).to_dict()["schedule"])
    reader = TaskReader()
    reads: list[tuple[str, bytes | int, bytes | None, str | None]] = [
        (data, b"2", b"7.5", None),
        (data, 0, None, None),
        (data, b"3", None, forced),
    ]
    for _ in range(2):
        for read in reads:
            assert reader(*read) == task_of(*read)
    assert reader(data, b"2", b"7.5").polls == 2 and reader(data, b"2", b"7.5").finished_at == 7.5
    assert reader(data, 0) == task
    for number in range(TaskReader.LIMIT + 5):  # bounded: forgets when full, still right
        other = make_task(number)
        raw = json.dumps({k: v for k, v in other.to_dict().items() if k != "polls"})
        assert reader(raw, 1) == dataclasses.replace(other, polls=1)


def test_commands_are_packed_byte_for_byte_as_redis_py_packs_them() -> None:
    # The store packs with hiredis (C) instead of redis-py's Python packer; if either changes
    # how it writes an argument, this fails instead of Redis receiving something else.
    ours, theirs = counting_connection([0])(), Connection()
    commands: list[tuple[Any, ...]] = [
        ("EVALSHA", "f" * 40, 2, "p:journal", "p:seq:journal", '{"a": "é"}', 200),
        ("SET", b"p:blob:ref:x", b"\x00\xff" * 5000, "EX", 86400),
        ("HMGET", "p:task:x", "d", "p", "e", "f"),
        ("X", 0, -1, 1.5, 0.1, 1e100, float("inf"), "", b""),
        ("SCRIPT LOAD", "return 1"),
        ("CLIENT", "SETNAME", "x"),
    ]
    for command in commands:
        assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))


async def test_the_store_reconnects_by_itself_after_a_redis_restart() -> None:
    server = RedisServer().start()
    store = RedisStore(server.url, "restart")
    try:
        await place(store, make_task(1))
        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.get_task(make_task(1).task_id)
        server.start()
        # The pooled connection died with the old server; the store reconnects on its own,
        # and the task acknowledged before the stop is still there (append-only file).
        assert await store.get_task(make_task(1).task_id) == make_task(1)
    finally:
        await store.close()
        server.remove()


def test_open_store_dispatches_redis_urls_and_names_a_bad_one() -> None:
    assert isinstance(open_store("redis://127.0.0.1:1/0", prefix="p"), RedisStore)
    # The emulator's own path leaves the eviction bound at its default (tests/test_store.py).
    assert open_store("redis://127.0.0.1:1/0").evict_at_most == EVICT_AT_MOST
    for bound in (0, True, "7"):
        with pytest.raises(ValueError, match="evict_at_most must be"):
            open_store("redis://127.0.0.1:1/0", evict_at_most=bound)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redis://"):
        open_store("redis://127.0.0.1:notaport/0")


async def test_a_journal_walk_misses_no_entry_another_worker_still_had_queued(
    workers: list[RedisStore],
) -> None:
    # Each worker writes its entries behind; a page drains only the reader's own queue. The
    # others' are numbered when written, after every entry already written, so a walk that
    # goes on from its cursor meets each of them once: none skipped, none repeated.
    reader = workers[0]
    listed: list[int] = []
    after: Any = None
    for round_ in range(30):
        for n, worker in enumerate(workers):
            for i in range(n + 1):  # queued, not yet written (no await between them)
                await worker.append_journal({"w": n, "i": i, "round": round_}, 10_000)
        page = await reader.journal_page(after, 7)
        assert page is not None
        listed += [e["seq"] for e in page.entries]
        after = page.last or after
    for worker in workers:
        await worker.journal_tail(1)  # every queue written (a read writes its own first)
    while True:
        page = await reader.journal_page(after, 7)
        assert page is not None
        listed += [e["seq"] for e in page.entries]
        after = page.last or after
        if not page.more:
            break
    assert listed == list(range(1, 30 * 10 + 1))  # 1 + 2 + 3 + 4 entries a round


async def test_journal_entries_lost_behind_the_request_are_counted_until_a_clear() -> None:
    # Written behind, never numbered: no page's `dropped` can count them, so the store does
    # (`Store.journal_lost`), for the fixture's check and the control plane's `unrecorded`.
    server = RedisServer().start()
    store = RedisStore(server.url, "lost", timeout=0.5)
    try:
        await store.append_journal({"i": 1}, 10)
        await store.journal_tail(1)  # written
        server.stop()
        for i in (2, 3):
            await store.append_journal({"i": i}, 10)
        with pytest.raises(StoreUnavailable):
            await store.journal_tail(1)  # its queue first: refused by the stopped server
        assert store.journal_lost() == 2
        server.start()
        await store.append_journal({"i": 4}, 10)
        page = await store.journal_page(None, 10)
        assert page is not None and [e["i"] for e in page.entries] == [1, 4]
        assert page.dropped == 0 and store.journal_lost() == 2  # only the count tells
        await store.clear_journal(mark=False)  # the bound's emptying: the losses stand
        assert store.journal_lost() == 2
        await store.clear_journal()
        assert store.journal_lost() == 0
        store._journal_writer.BACKLOG = 2  # the bound on entries waiting, made small
        for i in range(5):  # queued in one go: the oldest 3 are cut
            await store.append_journal({"i": i}, 10)
        assert store.journal_lost() == 3
        assert [e["i"] for e in await whole_journal(store)] == [3, 4]
        await store.reset()
        assert store.journal_lost() == 0
    finally:
        await store.close()
        server.remove()
