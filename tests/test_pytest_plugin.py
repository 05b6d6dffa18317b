"""The pytest plugin, run by pytester in a subprocess as a downstream project would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redis_server import RedisServer, running_redis

pytest_plugins = ["pytester"]


#: A downstream project has neither schemathesis nor hypothesis: their plugins are most of a
#: subprocess session's start-up here (~3 s of ~3.5), paid by every run below.
NO_HEAVY_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_downstream=source)
    return pytester.runpytest_subprocess(*NO_HEAVY_PLUGINS, *args)


def test_fixture_runs_a_task_to_success_without_sleeping(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        def test_generate(image_emulator):
            client = image_emulator.client()
            r = client.post("/v1/images/tasks", json={"model": "NanoBanana2-0.5K", "prompt": "x"})
            task_id = r.json()["data"]["task_id"]
            assert client.get(f"/v1/images/tasks/{task_id}").json()["data"]["status"] == "queued"
            image_emulator.run_until_settled()
            task = client.get(f"/v1/images/tasks/{task_id}").json()["data"]
            assert task["status"] == "succeeded"
            assert client.get(task["result_url"]).content.startswith(b"\\x89PNG")
            image_emulator.assert_requested(times=2, endpoint="poll")
            assert image_emulator.sent()[0]["prompt"] == "x"
        """,
    )
    result.assert_outcomes(passed=1)


def test_marker_sets_settings_and_is_strict(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.image_emulator(envelope="bare", seed=5)
        def test_bare(image_emulator):
            r = image_emulator.client().post(
                "/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
            assert r.json()["status"] == "queued"

        @pytest.mark.image_emulator(colour="red")
        def test_unknown_setting(image_emulator):
            pass
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*unknown setting 'colour'*"])


def test_settings_fixture_can_be_overridden(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def image_emulator_settings():
            return {"enabled_models": ["gpt-image-2"]}
        """
    )
    result = run(
        pytester,
        """
        def test_disabled(image_emulator):
            r = image_emulator.client().post(
                "/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
            assert r.json()["code"] == "model_not_found"
        """,
    )
    result.assert_outcomes(passed=1)


def test_each_test_gets_a_fresh_emulator(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_isolated(image_emulator, i):
            assert image_emulator.tasks == []
            image_emulator.client().post(
                "/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
            assert len(image_emulator.tasks) == 1

        @pytest.mark.parametrize("i", range(3))
        def test_isolated_live(image_emulator_live, i):
            assert image_emulator_live.tasks == []
            image_emulator_live.client().post(
                "/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
            image_emulator_live.faults.add("empty", times=1)
            assert len(image_emulator_live.tasks) == 1
        """,
    )
    result.assert_outcomes(passed=6)


def test_faults_steering_and_hits(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import httpx, pytest

        def test_faults(image_emulator):
            client = image_emulator.client()
            limited = image_emulator.faults.add(
                {"kind": "http_error", "status": 429, "retry_after": 3}, endpoint="submit", times=1)
            r = client.post("/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
            assert (r.status_code, r.headers["retry-after"]) == (429, "3")
            r = client.post("/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
            task_id = r.json()["data"]["task_id"]
            assert limited.hits == 1
            image_emulator.fail(task_id, code="content_policy_violation")
            task = client.get(f"/v1/images/tasks/{task_id}").json()["data"]
            assert task["error"]["code"] == "content_policy_violation"

        def test_drop_and_hang_in_process(image_emulator):
            image_emulator.faults.add("drop", times=1)
            image_emulator.faults.add("hang", times=1)
            client = image_emulator.client(timeout=0.05)
            body = {"model": "NanoBanana", "prompt": "x"}
            with pytest.raises(httpx.RemoteProtocolError):
                client.post("/v1/images/tasks", json=body)
            with pytest.raises(httpx.ReadTimeout):
                client.post("/v1/images/tasks", json=body)
        """,
    )
    result.assert_outcomes(passed=2)


def test_async_tests_use_the_async_client(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio

        def test_async(image_emulator):
            async def go():
                async with image_emulator.async_client() as client:
                    r = await client.post(
                        "/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
                    return r.json()["data"]["task_id"]
            task_id = asyncio.run(go())
            image_emulator.finish(task_id)
            assert image_emulator.tasks[0]["status"] == "succeeded"
        """,
    )
    result.assert_outcomes(passed=1)


def test_live_server_serves_any_client(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import json, subprocess, sys

        def test_subprocess_client(image_emulator_live):
            code = (
                "import httpx, sys; r = httpx.post(sys.argv[1] + '/v1/images/tasks', "
                "json={'model': 'NanoBanana', 'prompt': 'x'}, "
                "headers={'Authorization': 'Bearer k'}); print(r.status_code)"
            )
            out = subprocess.run([sys.executable, "-c", code, image_emulator_live.base_url],
                                 capture_output=True, text=True, check=True).stdout
            assert out.strip() == "200"
            assert len(image_emulator_live.tasks) == 1

        import pytest

        @pytest.mark.image_emulator(clock="per_poll")
        def test_fixed_setting_gets_its_own_server(image_emulator_live):
            client = image_emulator_live.client()
            r = client.post("/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
            task_id = r.json()["data"]["task_id"]
            task = client.get(f"/v1/images/tasks/{task_id}").json()["data"]
            assert task["status"] == "processing"
        """,
    )
    result.assert_outcomes(passed=2)


def test_works_under_xdist(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_parallel(image_emulator, image_emulator_live, i):
            for handle in (image_emulator, image_emulator_live):
                assert handle.tasks == []
                body = {"model": "NanoBanana", "prompt": "x"}
                handle.client().post("/v1/images/tasks", json=body)
                assert len(handle.tasks) == 1
        """,
        "-n",
        "2",
    )
    result.assert_outcomes(passed=6)


def test_in_process_fixture_closes_its_store_after_the_test(pytester: pytest.Pytester) -> None:
    state = pytester.path / "state"
    result = run(
        pytester,
        f"""
        import sqlite3

        import pytest

        seen = []

        @pytest.mark.image_emulator(state_dir={str(state)!r})
        def test_uses_a_file(image_emulator):
            seen.append(image_emulator.app.state.emulator.store)
            image_emulator.client().post(
                "/v1/images/tasks", json={{"model": "NanoBanana", "prompt": "x"}})

        def test_the_file_was_closed():
            with pytest.raises(sqlite3.ProgrammingError, match="closed"):
                seen[0]._db.execute("select 1")
        """,
    )
    result.assert_outcomes(passed=2)


def test_journal_refuses_filters_it_does_not_know(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        BODY = {"model": "NanoBanana", "prompt": "x"}

        def test_unknown_filters_are_errors(image_emulator):
            image_emulator.client().post("/v1/images/tasks", json=BODY)
            with pytest.raises(ValueError, match=r"'model'.*endpoint.*body"):
                image_emulator.assert_requested(times=1, model="X")
            with pytest.raises(ValueError, match="'bogus'"):
                image_emulator.requests(bogus="1")
            with pytest.raises(ValueError, match="'colour'"):
                image_emulator.sent(colour="red")

        def test_body_fields_are_filtered_explicitly(image_emulator):
            client = image_emulator.client()
            client.post("/v1/images/tasks", json=BODY)
            client.post("/v1/images/tasks", json=BODY | {"model": "NanoBanana2-0.5K", "n": 2})
            image_emulator.assert_requested(times=1, body={"model": "NanoBanana"})
            image_emulator.assert_requested(times=0, body={"model": "X"})
            image_emulator.assert_requested(times=1, endpoint="submit", body={"n": 2})
            assert [f["n"] for f in image_emulator.sent(body={"model": "NanoBanana2-0.5K"})] == [2]
            with pytest.raises(AssertionError, match="2 requests matched"):
                image_emulator.assert_requested(times=1, endpoint="submit")
        """,
    )
    result.assert_outcomes(passed=2)


def test_live_fixture_gives_each_test_the_start_up_state(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        BODY = {"model": "NanoBanana", "prompt": "x"}

        def test_changes_settings_and_state(image_emulator_live):
            image_emulator_live.configure(envelope="bare", submit_status=202, nano_max_n=1)
            image_emulator_live.faults.add("drop", endpoint="poll")
            image_emulator_live.set_balance(10**6)
            r = image_emulator_live.client().post("/v1/images/tasks", json=BODY)
            assert (r.status_code, r.json()["status"]) == (202, "queued")

        def test_next_test_starts_as_the_server_started(image_emulator_live):
            client = image_emulator_live.client()
            r = client.post("/v1/images/tasks", json=BODY | {"n": 2})
            assert r.status_code == 200, r.text
            task_id = r.json()["data"]["task_id"]
            assert client.get(f"/v1/images/tasks/{task_id}").status_code == 200
            assert list(image_emulator_live.faults) == []
            assert len(image_emulator_live.tasks) == 1

        @pytest.mark.image_emulator(envelope="bare")
        def test_marker_setting(image_emulator_live):
            client = image_emulator_live.client()
            assert client.post("/v1/images/tasks", json=BODY).json()["status"] == "queued"

        def test_after_a_marker(image_emulator_live):
            client = image_emulator_live.client()
            assert client.post("/v1/images/tasks", json=BODY).json()["code"] == "success"
        """,
    )
    result.assert_outcomes(passed=4)


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


INTERCEPTION = """
import httpx
import pytest

BODY = {"model": "NanoBanana2-0.5K", "prompt": "x"}
ORIGINAL = (httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request)


def generate(base_url):
    \"\"\"Code under test: makes its own client from a configured base URL.\"\"\"
    with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer sk-app"}) as client:
        task_id = client.post("/v1/images/tasks", json=BODY).json()["data"]["task_id"]
        return client.get(f"/v1/images/tasks/{task_id}").json()["data"]


async def agenerate(base_url):
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.post("/v1/images/tasks", json=BODY, headers={"Authorization": "Bearer k"})
        return r.json()["data"]


def test_own_client_on_the_public_transport(image_emulator):
    with httpx.Client(base_url=image_emulator.base_url, transport=image_emulator.transport,
                      headers={"Authorization": "Bearer mine"}) as client:
        assert client.post("/v1/images/tasks", json=BODY).status_code == 200
    # Closing a client of one's own leaves the emulator serving.
    assert image_emulator.client().post("/v1/images/tasks", json=BODY).status_code == 200
    assert len(image_emulator.tasks) == 2


@pytest.mark.asyncio
async def test_own_async_client_on_the_public_transport(image_emulator):
    async with httpx.AsyncClient(base_url=image_emulator.base_url,
                                 transport=image_emulator.async_transport) as client:
        r = await client.post("/v1/images/tasks", json=BODY, headers={"Authorization": "Bearer k"})
        assert r.status_code == 200
    image_emulator.assert_requested(times=1, endpoint="submit")


def test_intercept_routes_an_origin_to_the_emulator(image_emulator, image_emulator_live):
    image_emulator.intercept("https://relay.example")
    task = generate("https://relay.example")
    assert task["status"] == "queued"
    image_emulator.finish(task["task_id"])
    task = generate("https://relay.example")
    image_emulator.finish(task["task_id"])
    polled = httpx.get(f"https://relay.example/v1/images/tasks/{task['task_id']}",
                       headers={"Authorization": "Bearer sk-app"}).json()["data"]
    assert polled["result_url"].startswith("https://relay.example/_emulator/results/")
    assert httpx.get(polled["result_url"]).content.startswith(b"\\x89PNG")
    image_emulator.assert_requested(times=2, endpoint="submit")
    # Another origin is untouched: this one reaches the live server over the network.
    generate(image_emulator_live.base_url)
    assert len(image_emulator_live.tasks) == 1 and len(image_emulator.tasks) == 2


@pytest.mark.asyncio
async def test_intercept_async_clients_and_stop(image_emulator):
    with image_emulator.intercept("http://relay.example:8080") as interception:
        assert (await agenerate("http://relay.example:8080"))["status"] == "queued"
        assert generate("http://relay.example:8080")["status"] == "queued"
    assert not interception.active
    assert (httpx.HTTPTransport.handle_request,
            httpx.AsyncHTTPTransport.handle_async_request) == ORIGINAL
    image_emulator.assert_requested(times=2, endpoint="submit")


def test_intercept_refuses_what_is_not_an_origin(image_emulator):
    for bad in ("relay.example", "ftp://relay.example", "https://relay.example/api", ""):
        with pytest.raises(ValueError, match="origin|URL"):
            image_emulator.intercept(bad)
    image_emulator.intercept("https://relay.example")
    with pytest.raises(ValueError, match="already routed"):
        image_emulator.intercept("https://RELAY.example:443")


def test_interception_ends_with_its_test(image_emulator):
    image_emulator.intercept("https://relay.example", "https://other.example")


def test_nothing_is_intercepted_after_the_tests_that_did():
    assert (httpx.HTTPTransport.handle_request,
            httpx.AsyncHTTPTransport.handle_async_request) == ORIGINAL
"""


def test_public_transports_and_interception(pytester: pytest.Pytester) -> None:
    result = run(pytester, INTERCEPTION, "-o", "asyncio_default_fixture_loop_scope=function")
    result.assert_outcomes(passed=7)
