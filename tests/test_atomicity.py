"""Decisions on shared state are atomic in the store: the task cap under concurrent
submissions, forced outcomes racing polls, and Redis writes that the caller was told failed.

Each test drives emulators through their real request path (in-process HTTP) or their
``Emulator`` methods; the Redis ones use a real redis-server (tests/redis_server.py).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from emulator import Settings, create_app
from emulator.core.journal import JournalQuery
from emulator.errors import EmulatorError
from emulator.stores.memory import MemoryStore
from emulator.stores.redis import RedisStore
from emulator.usecases.emulator import Emulator
from emulator.usecases.journal import JournalIncomplete

from .redis_server import RedisServer, running_redis

KEY = "sk-atomic-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NANO = {"model": "NanoBanana", "prompt": "a lighthouse"}
NANO_PRICE = 40  # emulator/data/prices.toml


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


def _prefix(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


@asynccontextmanager
async def _clients(apps: list[Any]) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://emu", headers=AUTH
        )
        for app in apps
    ]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()
        await apps[0].state.emulator.store.reset()
        for app in apps:
            await app.state.emulator.store.close()


# -- the task cap ---------------------------------------------------------------------------
async def _submit_spread(clients: list[httpx.AsyncClient], count: int) -> list[int]:
    responses = await asyncio.gather(
        *(clients[i % len(clients)].post("/v1/images/tasks", json=NANO) for i in range(count))
    )
    return [r.status_code for r in responses]


def _cap_holds(store: str) -> None:
    # redis_timeout: on a loaded machine 50 concurrent submissions must not time out (a 503
    # would be a refusal the cap did not make).
    settings = Settings(seed=5, clock="manual", max_tasks=10, store=store, redis_timeout=30.0)
    settings = settings.replace(store_prefix=_prefix("cap"))

    async def run() -> tuple[list[int], int]:
        apps = [create_app(settings) for _ in range(2)]
        async with _clients(apps) as clients:
            codes = await _submit_spread(clients, 50)
            listed = (await clients[1].get("/_emulator/tasks")).json()["tasks"]
            return codes, len(listed)

    codes, stored = asyncio.run(run())
    # Every task is still running (manual clock at 0): none may go, so exactly ten fit.
    assert stored == 10
    assert (codes.count(200), codes.count(429)) == (10, 40)


def test_max_tasks_holds_for_concurrent_submissions_to_two_emulators_on_sqlite(
    tmp_path: Path,
) -> None:
    _cap_holds(f"sqlite://{tmp_path}/shared.db")


def test_max_tasks_holds_for_concurrent_submissions_to_two_workers_on_redis(
    redis_server: RedisServer,
) -> None:
    _cap_holds(redis_server.url)


# -- forced outcomes ----------------------------------------------------------------------------
class _PollLandsAfterEachRead(MemoryStore):
    """Another worker's poll lands right after this store hands out a task (once armed)."""

    emulator: Emulator | None = None
    armed: str | None = None

    async def get_task(self, task_id: str) -> Any:
        task = await super().get_task(task_id)
        if self.armed == task_id and self.emulator is not None:
            self.armed = None
            await self.emulator.find(task.owner if task else None, task_id, count_poll=True)
        return task


def test_a_forced_outcome_never_turns_a_task_another_worker_saw_succeed_into_failed() -> None:
    async def run() -> None:
        store = _PollLandsAfterEachRead()
        emulator = Emulator(Settings(seed=1, clock="per_poll", per_poll_steps=2), store)
        store.emulator = emulator
        app = create_app(Settings(seed=1))
        app.state.emulator = emulator
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://emu", headers=AUTH
        ) as client:
            task_id = (await client.post("/v1/images/tasks", json=NANO)).json()["data"]["task_id"]
            first = (await client.get(f"/v1/images/tasks/{task_id}")).json()["data"]
            assert first["status"] == "processing"
            # The poll that finishes it lands between the force's read and its write.
            store.armed = task_id
            with pytest.raises(EmulatorError) as refused:
                await emulator.force_outcome(task_id, "failed", None, None)
            assert refused.value.status_code == 409
            after = (await client.get(f"/v1/images/tasks/{task_id}")).json()["data"]
            assert (after["status"], after["progress"]) == ("succeeded", "100%")
            stored = await store.get_task(task_id)
            assert stored is not None and stored.polls == 3  # no poll was lost

    asyncio.run(run())


# -- Redis writes the caller was told failed -------------------------------------------------
def _asleep(port: int) -> bool:
    """Whether Redis leaves a PING unanswered for 0.2 s (it is stalled)."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        sock.settimeout(0.2)
        try:
            return not sock.recv(16)
        except TimeoutError:
            return True


@contextmanager
def stalled(server: RedisServer, seconds: float) -> Iterator[None]:
    """Redis runs ``DEBUG SLEEP seconds`` (nothing is served meanwhile, commands queue up).

    On exit, waits for the sleep to end; commands queued during it run before anything sent
    afterwards (one event-loop pass), so the caller then sees everything they did.
    """
    sleeper = socket.create_connection(("127.0.0.1", server.port), timeout=seconds + 10)
    try:
        sleeper.sendall(f"DEBUG SLEEP {seconds}\r\n".encode())
        deadline = time.monotonic() + 5
        while not _asleep(server.port):  # readiness, bounded
            assert time.monotonic() < deadline, "redis-server did not stall"
        yield
        assert sleeper.recv(16).startswith(b"+OK")
    finally:
        sleeper.close()


def _emulator_on(server: RedisServer, prefix: str, **overrides: Any) -> tuple[Any, Emulator]:
    """An app whose emulator talks to Redis with a short socket timeout (0.3 s)."""
    settings = Settings(seed=9, journal_limit=0, store_prefix=prefix).replace(**overrides)
    app = create_app(settings)
    emulator = Emulator(settings, RedisStore(server.url, prefix, timeout=0.3))
    app.state.emulator = emulator
    return app, emulator


def test_a_clock_advance_answered_503_during_a_redis_stall_never_happens(
    redis_server: RedisServer,
) -> None:
    app, _ = _emulator_on(redis_server, _prefix("stall-clock"), clock="manual")

    async def run() -> tuple[int, float]:
        async with _clients([app]) as (client,):
            assert (await client.post("/_emulator/clock/advance", json={"seconds": 1})).is_success
            with stalled(redis_server, 1.0):
                moved = await client.post("/_emulator/clock/advance", json={"seconds": 100})
            now = (await client.get("/_emulator/clock")).json()["now"]
            return moved.status_code, now

    status, now = asyncio.run(run())
    assert status == 503
    assert now == 1.0  # the refused advance did not move the clock, not even late


def test_a_submission_answered_503_in_a_redis_stall_never_happens_and_its_retry_makes_one_task(
    redis_server: RedisServer,
) -> None:
    prefix = _prefix("stall-submit")
    # Real clock: the submission's only writes are the task with its hold (one script).
    # The latency leaves room to stall Redis between the submission's read and its write.
    one, _ = _emulator_on(redis_server, prefix, clock="real", submit_latency=0.5)
    two, _ = _emulator_on(redis_server, prefix, clock="real")
    counter = redis.Redis(port=redis_server.port)

    def scripts_run() -> int:
        return int(counter.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    async def run() -> tuple[int, int, list[dict[str, Any]], list[dict[str, Any]]]:
        async with _clients([one, two]) as (a, b):
            assert (await a.put(f"/_emulator/balances/{KEY}", json={"balance": 1000})).is_success
            for client in (a, b):  # warm: each worker's first submission also sweeps
                assert (await client.post("/v1/images/tasks", json=NANO)).status_code == 200
            # Readiness: Redis has run the submission's read (so its answer is on its way) and
            # the submission now waits 0.5 s before its write.
            before = scripts_run()
            pending = asyncio.ensure_future(a.post("/v1/images/tasks", json=NANO))
            deadline = time.monotonic() + 5
            while scripts_run() == before:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.001)
            with stalled(redis_server, 1.2):
                refused = await pending
            retried = await b.post("/v1/images/tasks", json=NANO)
            assert retried.status_code == 200
            tasks = (await b.get("/_emulator/tasks")).json()["tasks"]
            balances = (await b.get("/_emulator/balances")).json()["balances"]
            return refused.status_code, len(tasks), balances, tasks

    try:
        status, count, balances, _ = asyncio.run(run())
    finally:
        counter.close()
    assert status == 503
    assert count == 3  # two warm-up tasks and the retried one: the refused one never was
    assert balances == [{"key": "sk-a…key", "balance": 1000 - 3 * NANO_PRICE}]


def test_a_refused_submission_costs_the_same_however_long_the_usage_log(
    redis_server: RedisServer,
) -> None:
    """Redis commands run for one 403 insufficient_quota, with 20 and with 400 charges kept."""
    prefix = _prefix("refused")
    settings = Settings(seed=2, clock="manual", journal_limit=0, store=redis_server.url)
    settings = settings.replace(store_prefix=prefix)
    counter = redis.Redis(port=redis_server.port)

    def commands_run() -> int:
        stats = counter.info("commandstats")
        return sum(int(row["calls"]) for row in stats.values())

    async def run() -> list[int]:
        app = create_app(settings)
        costs = []
        async with _clients([app]) as (client,):
            others = {"Authorization": "Bearer sk-someone-else"}
            await client.put(f"/_emulator/balances/{KEY}", json={"balance": 0})
            for stored in (20, 400):
                while len((await client.get("/_emulator/usage")).json()["entries"]) < stored:
                    await asyncio.gather(
                        *(
                            client.post("/v1/images/tasks", json=NANO, headers=others)
                            for _ in range(20)
                        )
                    )
                await client.post("/_emulator/clock/advance", json={"seconds": 10_000})
                await client.get("/_emulator/usage")  # settles what ended
                before = commands_run()
                refused = await client.post("/v1/images/tasks", json=NANO)
                assert refused.status_code == 403
                costs.append(commands_run() - before - 1)  # less the INFO itself
        return costs

    try:
        small, large = asyncio.run(run())
    finally:
        counter.close()
    assert large <= small + 5, (small, large)


def test_a_poll_refused_during_a_redis_stall_is_not_counted(redis_server: RedisServer) -> None:
    app, emulator = _emulator_on(redis_server, _prefix("stall-poll"), clock="per_poll")

    async def run() -> tuple[int, int]:
        async with _clients([app]) as (client,):
            task_id = (await client.post("/v1/images/tasks", json=NANO)).json()["data"]["task_id"]
            with stalled(redis_server, 1.0):
                refused = await client.get(f"/v1/images/tasks/{task_id}")
            stored = await emulator.store.get_task(task_id)
            assert stored is not None
            return refused.status_code, stored.polls

    status, polls = asyncio.run(run())
    assert status == 503
    assert polls == 0  # a poll answered 503 did not move the task, not even late


def test_requests_whose_journal_entries_an_outage_lost_are_told_not_passed_off_as_whole() -> None:
    # The entries of requests served while Redis is away are never written, so never
    # numbered: the control plane's `unrecorded` and the fixture's whole-journal check say so.
    server = RedisServer().start()
    app, emulator = _emulator_on(server, _prefix("journal-lost"), journal_limit=100)

    async def run() -> None:
        async with _clients([app]) as (client,):
            assert (await client.post("/v1/images/tasks", json=NANO)).is_success
            assert len((await client.get("/_emulator/requests")).json()["requests"]) == 1
            server.stop()
            answered = await client.post("/v1/images/tasks", json=NANO)
            assert answered.status_code == 503
            # A read writes its worker's queue first: refused, the entry is lost.
            assert (await client.get("/_emulator/requests")).status_code == 503
            server.start()
            page = (await client.get("/_emulator/requests")).json()
            assert [e["status"] for e in page["requests"]] == [200]
            assert (page["dropped"], page["unrecorded"]) == (0, 1)
            with pytest.raises(JournalIncomplete, match="1 journal entries were lost"):
                await emulator.steering.journal(JournalQuery(), whole=True)
            assert (await client.delete("/_emulator/requests")).status_code == 204
            assert (await client.get("/_emulator/requests")).json()["unrecorded"] == 0
            assert await emulator.steering.journal(JournalQuery(), whole=True) == []

    try:
        asyncio.run(run())
    finally:
        server.remove()
