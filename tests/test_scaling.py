"""Several emulator processes on one Redis behave as one emulator.

Two ``python -m emulator serve`` processes on free loopback ports share a real redis-server;
every test resets through one of them first. Load is spread over both with concurrent
requests, so the counts below hold only if the store's steps are atomic across processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulator.config import ConfigError, Settings
from emulator.http.app import create_app

from .redis_server import RedisServer, free_port, running_redis
from .served import serve_refused

KEY = "sk-scaling-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NANO = {"model": "NanoBanana", "prompt": "a lighthouse"}
NANO_PRICE = 40  # emulator/data/prices.toml


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


class EmulatorProcess:
    """``python -m emulator serve`` on a free port, stopped by its PID."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "emulator", "serve", "--port", str(self.port), *args]
        # Its errors go to a file: a pipe nobody reads while it runs could fill and block it.
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*command, "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=self.errors
        )

    def wait_ready(self) -> EmulatorProcess:
        deadline = time.monotonic() + 30
        while True:  # readiness, bounded
            try:
                if httpx.get(f"{self.url}/_emulator/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.errors.seek(0)
                why = self.errors.read().decode()
                self.stop()
                raise RuntimeError(f"emulator did not start: {why}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.errors.close()


def _serve_args(redis_url: str, prefix: str) -> list[str]:
    return ["--store", redis_url, "--store-prefix", prefix, "--seed", "1234", "--clock", "manual"]


@pytest.fixture(scope="module")
def pair(redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    """Base URLs of two emulator processes sharing one Redis prefix."""
    processes = [EmulatorProcess(*_serve_args(redis_server.url, "pair")) for _ in range(2)]
    try:
        yield tuple(p.wait_ready().url for p in processes)  # type: ignore[misc]
    finally:
        for p in processes:
            p.stop()


@pytest.fixture
def a_b(pair: tuple[str, str]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Clients of the two processes, after a reset (through the first)."""
    with (
        httpx.Client(base_url=pair[0], headers=AUTH, timeout=10) as a,
        httpx.Client(base_url=pair[1], headers=AUTH, timeout=10) as b,
    ):
        assert a.post("/_emulator/reset").status_code == 200
        yield a, b


def _data(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _spread(
    urls: tuple[str, ...], count: int, payload: dict[str, Any], key: str = KEY
) -> list[httpx.Response]:
    """``count`` concurrent submissions, alternating over ``urls``."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=20) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(f"{urls[i % len(urls)]}/v1/images/tasks", json=payload)
                    for i in range(count)
                )
            )
        )


def test_a_task_submitted_on_one_is_polled_on_the_other(
    a_b: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = a_b
    task_id = _data(a.post("/v1/images/tasks", json=NANO))["task_id"]
    assert _data(b.get(f"/v1/images/tasks/{task_id}"))["status"] == "queued"
    # Another key sees nothing, on either process.
    other = {"Authorization": "Bearer sk-someone-else"}
    assert b.get(f"/v1/images/tasks/{task_id}", headers=other).status_code == 404


def test_the_manual_clock_advanced_on_one_moves_tasks_on_both(
    a_b: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = a_b
    ids = [_data(c.post("/v1/images/tasks", json=NANO))["task_id"] for c in (a, b)]
    assert a.post("/_emulator/clock/advance", json={"seconds": 10_000}).status_code == 200
    for client in (a, b):
        assert client.get("/_emulator/clock").json()["now"] == 10_000
        for task_id in ids:
            task = _data(client.get(f"/v1/images/tasks/{task_id}"))
            assert task["status"] == "succeeded"
            # Either process renders the result of a task the other accepted.
            image = client.get(
                task["result_url"].replace(task["result_url"][:22], client_url(client))
            )
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"


def client_url(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")[:22]


def test_fault_times_hold_under_load_over_both(
    pair: tuple[str, str], a_b: tuple[httpx.Client, httpx.Client]
) -> None:
    a, b = a_b
    rule = {"id": "three", "effect": {"kind": "http_error", "status": 429}, "times": 3}
    assert a.post("/_emulator/faults", json=rule).status_code == 201
    responses = asyncio.run(_spread(pair, 40, NANO))
    assert sorted(r.status_code for r in responses) == [200] * 37 + [429] * 3
    assert b.get("/_emulator/faults").json()["faults"][0]["hits"] == 3


def test_balances_never_overspend_under_load_over_both(
    pair: tuple[str, str], a_b: tuple[httpx.Client, httpx.Client]
) -> None:
    a, b = a_b
    assert a.put(f"/_emulator/balances/{KEY}", json={"balance": 7 * NANO_PRICE + 10}).is_success
    responses = asyncio.run(_spread(pair, 30, NANO))
    codes = [r.status_code for r in responses]
    assert (codes.count(200), codes.count(403)) == (7, 23)
    assert b.get("/_emulator/balances").json()["balances"][0]["balance"] == 10
    held = [e for e in b.get("/_emulator/usage").json()["entries"] if e["state"] == "held"]
    assert len(held) == 7


def test_task_ids_never_collide_under_load_over_both(
    pair: tuple[str, str], a_b: tuple[httpx.Client, httpx.Client]
) -> None:
    a, _ = a_b
    responses = asyncio.run(_spread(pair, 80, NANO))
    ids = {_data(r)["task_id"] for r in responses}
    assert len(ids) == 80
    assert {t["task"]["task_id"] for t in a.get("/_emulator/tasks").json()["tasks"]} == ids


def test_reset_on_one_clears_both(a_b: tuple[httpx.Client, httpx.Client]) -> None:
    a, b = a_b
    task_id = _data(b.post("/v1/images/tasks", json=NANO))["task_id"]
    b.post("/_emulator/clock/advance", json={"seconds": 5})
    assert a.post("/_emulator/reset").status_code == 200
    assert b.get(f"/v1/images/tasks/{task_id}").status_code == 404
    assert b.get("/_emulator/clock").json()["now"] == 0
    assert b.get("/_emulator/tasks").json()["tasks"] == []


def test_each_poll_moves_a_task_one_step_across_workers(redis_server: RedisServer) -> None:
    """Two apps (in this process, each with its own Redis connections) on the per_poll clock
    answer concurrent polls exactly as one in-memory emulator answers them one by one."""
    settings = Settings(seed=7, clock="per_poll", per_poll_steps=4)

    async def run(store: str, workers: int) -> list[str]:
        shared = settings.replace(store=store, store_prefix=f"perpoll-{time.monotonic_ns()}")
        apps = [create_app(shared) for _ in range(workers)]
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu")
            for app in apps
        ]
        try:
            first = await clients[0].post("/v1/images/tasks", json=NANO, headers=AUTH)
            path = f"/v1/images/tasks/{first.json()['data']['task_id']}"
            polls = await asyncio.gather(
                *(clients[i % workers].get(path, headers=AUTH) for i in range(5))
            )
            return sorted(p.json()["data"]["progress"] for p in polls)
        finally:
            for client in clients:
                await client.aclose()
            for app in apps:
                await app.state.emulator.store.reset()
                await app.state.emulator.store.close()

    expected = asyncio.run(run("memory", 1))
    assert len(set(expected)) == 4 and expected.count("100%") == 2
    assert asyncio.run(run(redis_server.url, 2)) == expected


def _in_process(settings: Settings) -> tuple[Any, httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    return app, httpx.AsyncClient(transport=transport, base_url="http://emu", headers=AUTH)


@pytest.mark.parametrize("clock", ["real", "manual", "per_poll"])
def test_a_poll_costs_one_round_trip_and_a_submission_two(
    redis_server: RedisServer, clock: str
) -> None:
    # The journal is written behind (measured below), so the request path is what counts.
    settings = Settings(seed=3, clock=clock, journal_limit=0, store=redis_server.url)  # type: ignore[arg-type]
    settings = settings.replace(store_prefix=f"cost-{clock}")

    async def run() -> tuple[int, int]:
        app, client = _in_process(settings)
        store = app.state.emulator.store
        async with client:
            # Warm-up: the id stream, the first sweep, connections and scripts.
            task_id = (await client.post("/v1/images/tasks", json=NANO)).json()["data"]["task_id"]
            assert (await client.get(f"/v1/images/tasks/{task_id}")).status_code == 200
            before = store.round_trips
            assert (await client.post("/v1/images/tasks", json=NANO)).status_code == 200
            submit = store.round_trips - before
            before = store.round_trips
            assert (await client.get(f"/v1/images/tasks/{task_id}")).status_code == 200
            poll = store.round_trips - before
        await store.reset()
        await store.close()
        return submit, poll

    assert asyncio.run(run()) == (2, 1)


def test_a_worker_starting_later_keeps_the_hits_of_configured_rules(
    redis_server: RedisServer,
) -> None:
    rule = {"id": "twice", "effect": {"kind": "http_error", "status": 503}, "times": 2}
    settings = Settings(seed=3, clock="manual", store=redis_server.url, store_prefix="configured")
    settings = settings.replace(faults=[rule])

    async def run() -> list[int]:
        first_app, first = _in_process(settings)
        codes = [(await first.post("/v1/images/tasks", json=NANO)).status_code]
        second_app, second = _in_process(settings)  # starts (installs its rules) only now
        for client in (second, first, second):
            codes.append((await client.post("/v1/images/tasks", json=NANO)).status_code)
        for client in (first, second):
            await client.aclose()
        await first_app.state.emulator.store.reset()
        for app in (first_app, second_app):
            await app.state.emulator.store.close()
        return codes

    assert asyncio.run(run()) == [503, 503, 200, 200]


def test_workers_starting_at_once_on_other_clocks_agree_on_one(redis_server: RedisServer) -> None:
    """Apps on one prefix (each with its own connections) start together, some on the manual
    clock and some on the real one: those on the clock that came first start, the others are
    refused naming ``clock``, and a later start follows the same rule."""
    shared = Settings(seed=3, store=redis_server.url, store_prefix=f"clocks-{time.monotonic_ns()}")
    clocks = ["manual", "real"] * 3

    async def start(clock: str) -> str:
        app = create_app(shared.replace(clock=clock))
        try:
            await app.state.emulator.start()
        except ConfigError as exc:
            assert exc.field == "clock" and f"kept with the {clock!r} clock" not in exc.message
            return exc.message
        finally:
            await app.state.emulator.store.close()
        return "started"

    async def run() -> list[str]:
        return list(await asyncio.gather(*(start(clock) for clock in clocks)))

    answers = asyncio.run(run())
    started = {clock for clock, answer in zip(clocks, answers, strict=True) if answer == "started"}
    assert len(started) == 1, answers
    (kept,) = started
    refused = [answer for answer in answers if answer != "started"]
    assert len(refused) == 3 and all(f"kept with the {kept!r} clock" in a for a in refused)
    assert all(shared.store_prefix in a for a in refused)
    assert asyncio.run(start(kept)) == "started"
    assert asyncio.run(start("per_poll")) != "started"


def test_serve_on_another_clock_than_its_redis_prefix_was_kept_with_exits_2(
    redis_server: RedisServer,
) -> None:
    prefix = f"clock-cli-{time.monotonic_ns()}"
    settings = Settings(seed=3, clock="per_poll", store=redis_server.url, store_prefix=prefix)

    async def keep() -> None:
        app = create_app(settings)
        await app.state.emulator.start()
        await app.state.emulator.store.close()

    asyncio.run(keep())
    stderr = serve_refused("--store", redis_server.url, "--store-prefix", prefix, "--clock", "real")
    assert "cannot start: setting 'clock': " in stderr
    for needle in (f"store_prefix {prefix!r}", "'per_poll' clock", "--clock per_poll"):
        assert needle in stderr


def test_journal_entries_are_written_behind_in_batches(redis_server: RedisServer) -> None:
    settings = Settings(seed=3, clock="manual", store=redis_server.url, store_prefix="batches")

    async def run() -> tuple[int, int]:
        app, client = _in_process(settings)
        store = app.state.emulator.store
        async with client:
            task_id = (await client.post("/v1/images/tasks", json=NANO)).json()["data"]["task_id"]
            await client.delete("/_emulator/requests")
            before = store.round_trips
            path = f"/v1/images/tasks/{task_id}"
            await asyncio.gather(*(client.get(path) for _ in range(50)))
            await store._drain()  # what the next journal read does first
            spent = store.round_trips - before
            journal = (await client.get("/_emulator/requests")).json()["requests"]
        await store.reset()
        await store.close()
        return spent, len(journal)

    spent, entries = asyncio.run(run())
    assert entries == 50
    # One read per poll; the 50 entries shared their writes: how many depends on when the
    # replies came back (a handful on a quiet machine, up to ~35 under a load average of 12),
    # but written one by one they would take 50.
    assert spent < 50 + 50


def test_redis_restart_gives_503s_then_recovers_without_losing_tasks() -> None:
    server = RedisServer().start()
    emulators = [EmulatorProcess(*_serve_args(server.url, "restart")) for _ in range(2)]
    clients: list[httpx.Client] = []
    try:
        clients += [httpx.Client(base_url=e.wait_ready().url, headers=AUTH) for e in emulators]
        accepted = [
            _data(clients[i % 2].post("/v1/images/tasks", json=NANO))["task_id"] for i in range(6)
        ]
        server.stop()  # SIGTERM: Redis writes its append-only file and exits
        started = time.monotonic()
        for client in clients:
            down = client.post("/v1/images/tasks", json=NANO)
            assert down.status_code == 503 and down.headers["retry-after"] == "1"
            assert down.json()["code"] == "service_unavailable" and down.json()["data"] is None
            assert client.get(f"/v1/images/tasks/{accepted[0]}").status_code == 503
            health = client.get("/_emulator/health")
            assert health.status_code == 503 and health.json()["store"]["ok"] is False
        assert time.monotonic() - started < 10  # answers, not hangs
        server.start()
        for client in clients:  # back by themselves: nothing restarted the emulators
            assert client.get("/_emulator/health").status_code == 200
            for task_id in accepted:
                assert _data(client.get(f"/v1/images/tasks/{task_id}"))["status"] == "queued"
            assert client.post("/v1/images/tasks", json=NANO).status_code == 200
    finally:
        for client in clients:
            client.close()
        for emulator in emulators:
            emulator.stop()
        server.remove()


def test_serve_with_two_workers_shares_state(redis_server: RedisServer) -> None:
    emulator = EmulatorProcess(*_serve_args(redis_server.url, "workers"), "--workers", "2")
    try:
        url = emulator.wait_ready().url
        httpx.post(f"{url}/_emulator/reset", timeout=10)
        responses = asyncio.run(_spread((url,), 40, NANO))
        ids = {_data(r)["task_id"] for r in responses}
        tasks = httpx.get(f"{url}/_emulator/tasks", timeout=10).json()["tasks"]
        assert len(ids) == 40 and {t["task"]["task_id"] for t in tasks} == ids
    finally:
        emulator.stop()


@pytest.mark.parametrize("store", ["memory", "sqlite:///tmp/emulator-refused.db"])
def test_serve_refuses_workers_without_a_shared_store(store: str) -> None:
    stderr = serve_refused("--workers", "2", "--store", store)
    assert "--workers 2 needs a store that every worker process shares" in stderr
    assert "redis://" in stderr


def test_serve_stops_with_a_clear_error_when_redis_is_unreachable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    stderr = serve_refused("--store", url)
    assert "cannot start" in stderr and "is Redis running" in stderr
