"""The pytest plugin's steering in sync, pytest-asyncio and anyio tests, run by pytester."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .pytester_support import run
from .redis_server import RedisServer, running_redis

pytest_plugins = ["pytester"]


#: One downstream module exercising every steering call, run as sync, pytest-asyncio and anyio
#: tests, each on the memory, SQLite and Redis stores.
STEERING_EVERYWHERE = """
import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

BODY = {"model": "NanoBanana2-0.5K", "prompt": "x"}


@pytest.fixture(params=["memory", "sqlite", "redis"])
def image_emulator_settings(request, tmp_path):
    if request.param == "redis":  # one server for the session, a key prefix per test
        return {"store": os.environ["TEST_REDIS_URL"], "store_prefix": uuid.uuid4().hex}
    return {} if request.param == "memory" else {"store": f"sqlite:///{tmp_path}/state.db"}


def steer(emulator, task_ids):
    \"\"\"Every steering call, synchronously, whatever kind of test calls it.\"\"\"
    first, second, third = task_ids
    assert emulator.advance(1) == 1.0
    assert emulator.finish(first)["status"] == "succeeded"
    assert emulator.fail(second, code="content_policy_violation")["status"] == "failed"
    assert {v["status"] for v in emulator.run_until_settled()} == {"succeeded", "failed"}
    assert [t["status"] for t in emulator.tasks] == ["succeeded", "failed", "succeeded"]
    rule = emulator.faults.add({"kind": "http_error", "status": 503}, endpoint="poll", times=1)
    assert [r["id"] for r in emulator.faults] == [rule.id]
    emulator.set_balance(1000)
    assert emulator.usage["totals"]["paid"] > 0
    assert len(emulator.requests(endpoint="submit")) == 3
    emulator.configure(envelope="bare")
    return rule


async def async_flow(emulator):
    async with emulator.async_client() as client:
        ids = [(await client.post("/v1/images/tasks", json=BODY)).json()["data"]["task_id"]
               for _ in range(3)]
        rule = steer(emulator, ids)
        assert (await client.get(f"/v1/images/tasks/{ids[0]}")).status_code == 503
        assert rule.hits == 1
        polled = (await client.get(f"/v1/images/tasks/{ids[0]}")).json()
        assert polled["status"] == "succeeded"  # bare envelope, configured above
        picture = await client.get(polled["result_url"])
        assert picture.content.startswith(b"\\x89PNG")
    # The sync client works inside an async test too.
    assert emulator.client().get(f"/v1/images/tasks/{ids[2]}").status_code == 200
    emulator.reset()
    assert emulator.tasks == [] and list(emulator.faults) == []


def test_sync(image_emulator):
    client = image_emulator.client()
    ids = [client.post("/v1/images/tasks", json=BODY).json()["data"]["task_id"]
           for _ in range(3)]
    steer(image_emulator, ids)
    # An async client driven by the test's own loop, then steering again.
    async def poll():
        async with image_emulator.async_client() as aclient:
            return (await aclient.get(f"/v1/images/tasks/{ids[0]}")).status_code
    now = image_emulator.advance(0)
    assert asyncio.run(poll()) == 503
    assert image_emulator.advance(1) == now + 1


def test_threads_of_the_code_under_test(image_emulator):
    client = image_emulator.client()

    def submit(_):
        return client.post("/v1/images/tasks", json=BODY).json()["data"]["task_id"]

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(submit, range(8)))
    assert len(set(ids)) == 8
    assert {v["status"] for v in image_emulator.run_until_settled()} == {"succeeded"}


@pytest.mark.asyncio
async def test_pytest_asyncio(image_emulator):
    await async_flow(image_emulator)


@pytest.mark.anyio
async def test_anyio(image_emulator):
    await async_flow(image_emulator)


@pytest.mark.asyncio
async def test_concurrent_requests_and_connection_faults(image_emulator):
    image_emulator.faults.add("drop", endpoint="poll", times=1)
    async with image_emulator.async_client() as client:
        answers = await asyncio.gather(
            *(client.post("/v1/images/tasks", json=BODY) for _ in range(5))
        )
        assert len({a.json()["data"]["task_id"] for a in answers}) == 5
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"/v1/images/tasks/{answers[0].json()['data']['task_id']}")
    image_emulator.assert_requested(times=5, endpoint="submit")
"""


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


def test_every_steering_call_works_in_sync_and_async_tests(
    pytester: pytest.Pytester, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_REDIS_URL", redis_server.url)
    result = run(pytester, STEERING_EVERYWHERE, "-o", "asyncio_default_fixture_loop_scope=function")
    result.assert_outcomes(passed=15)


def test_steering_does_not_go_through_the_control_plane(pytester: pytest.Pytester) -> None:
    # With an admin token the control plane refuses requests without it; the fixture steers
    # the emulator directly, so it needs none.
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.image_emulator(admin_token="s3cret")
        def test_steer(image_emulator):
            client = image_emulator.client()
            r = client.post("/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
            image_emulator.advance(3600)
            assert image_emulator.tasks[0]["status"] == "succeeded"
            assert client.get("/_emulator/tasks").status_code == 401
        """,
    )
    result.assert_outcomes(passed=1)
