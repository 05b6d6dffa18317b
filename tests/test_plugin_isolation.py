"""Each test gets an emulator of its own from the pytest plugin: a fresh state, the start-up
state however an earlier test changed the emulator the pool hands on, its own marker's
settings, nothing reachable by what an earlier test kept, its store closed after it. Run by
pytester in a subprocess as a downstream project would."""

from __future__ import annotations

import pytest

from .pytester_support import run

pytest_plugins = ["pytester"]


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


def test_in_process_fixture_gives_each_test_the_start_up_state(pytester: pytest.Pytester) -> None:
    # The fixture may hand a later test the emulator an earlier one used (emulator/testing/
    # pool.py): whatever the earlier one did, the later one sees what a fresh emulator shows.
    result = run(
        pytester,
        """
        import httpx
        import pytest

        BODY = {"model": "NanoBanana", "prompt": "x"}
        FAULT = {"id": "configured", "effect": {"kind": "http_error", "status": 503},
                 "match": {"endpoint": "poll"}, "probability": 0.5}
        first = {}

        @pytest.fixture
        def image_emulator_settings():
            return {"faults": [FAULT], "failure_rate": 0.5}

        def fresh_view(emulator):
            client = emulator.client()
            ids = [client.post("/v1/images/tasks", json=BODY).json()["data"]["task_id"]
                   for _ in range(3)]
            polls = [client.get(f"/v1/images/tasks/{ids[0]}").status_code for _ in range(8)]
            emulator.advance(3600)
            tasks = emulator.tasks
            urls = [url for task in tasks for url in task["result_urls"]]
            assert urls  # failure_rate 0.5 of 3 tasks under seed 0: one succeeded
            for task in tasks:  # a result URL's token is random by design (unguessable)
                del task["task"]["token"], task["result_urls"]
            return {"ids": ids, "tasks": tasks, "polls": polls, "faults": list(emulator.faults),
                    "usage": emulator.usage, "journal": len(emulator.requests()),
                    "picture": client.get(urls[0]).content}

        @pytest.mark.parametrize("i", range(3))
        def test_messes_up_then_sees_a_fresh_start(image_emulator, i):
            assert image_emulator.tasks == [] and image_emulator.requests() == []
            assert image_emulator.advance(0) == 0.0
            assert [r["hits"] for r in image_emulator.faults] == [0]
            view = fresh_view(image_emulator)
            first.setdefault("view", view)
            assert view == first["view"]
            # The mess: rules, balances, ended tasks, a later clock, a hung answer, usage.
            image_emulator.faults.add("drop", endpoint="submit", times=1)
            image_emulator.respond(418, json={"x": 1}, endpoint="poll")
            image_emulator.set_balance(5)
            image_emulator.set_balance(7, key="sk-other")
            client = image_emulator.client()
            with pytest.raises(httpx.RemoteProtocolError):
                client.post("/v1/images/tasks", json=BODY)
            image_emulator.set_balance(None)
            task_id = client.post("/v1/images/tasks", json=BODY).json()["data"]["task_id"]
            image_emulator.fail(task_id, code="content_policy_violation")
            image_emulator.faults.add({"kind": "hang"}, endpoint="submit")
            with pytest.raises(httpx.ReadTimeout):
                image_emulator.client(timeout=0.01).post("/v1/images/tasks", json=BODY)
            image_emulator.advance(10**6)

        def test_after_configure(image_emulator):
            image_emulator.configure(envelope="bare", failure_rate=0.0)
            r = image_emulator.client().post("/v1/images/tasks", json=BODY)
            assert r.json()["status"] == "queued"

        def test_after_the_configured_one(image_emulator):
            assert fresh_view(image_emulator) == first["view"]
        """,
    )
    result.assert_outcomes(passed=5)


def test_a_client_kept_from_an_earlier_test_cannot_reach_the_next_tests_emulator(
    pytester: pytest.Pytester,
) -> None:
    # The pool hands the next test (same settings) the same emulator on the same open loop:
    # whatever an earlier test left behind (a module-level client, a handle, a thread of the
    # code under test) must fail as it did when each test had an emulator of its own, and
    # must add nothing to the next test's tasks, journal, usage or fault hits.
    result = run(
        pytester,
        """
        import asyncio
        import threading

        import httpx
        import pytest

        BODY = {"model": "NanoBanana", "prompt": "x"}
        CLOSED = "this emulator is closed: its test is over"
        kept = {}

        def test_leaves_clients_behind(image_emulator):
            kept["handle"] = image_emulator
            kept["client"] = image_emulator.client()
            kept["async_client"] = image_emulator.async_client()
            kept["own"] = httpx.Client(base_url=image_emulator.base_url,
                                       transport=image_emulator.transport)
            with image_emulator.intercept("https://relay.example"):
                kept["intercepted"] = httpx.Client(base_url="https://relay.example")
                assert kept["intercepted"].post("/v1/images/tasks", json=BODY).status_code == 401
            go, outcome = threading.Event(), {}

            def worker():  # a thread of the code under test, never joined by its test
                go.wait(10)
                try:
                    outcome["status"] = kept["client"].post("/v1/images/tasks", json=BODY)
                except RuntimeError as exc:
                    outcome["error"] = str(exc)

            kept["thread"] = threading.Thread(target=worker, daemon=True)
            kept["thread"].start()
            kept["go"], kept["outcome"] = go, outcome
            kept["hits"] = image_emulator.faults.add("drop", endpoint="poll")

        def test_the_next_test_sees_none_of_them(image_emulator):
            for name in ("client", "own"):
                with pytest.raises(RuntimeError, match=CLOSED):
                    kept[name].post("/v1/images/tasks", json=BODY)
            with pytest.raises(RuntimeError, match=CLOSED):
                asyncio.run(kept["async_client"].post("/v1/images/tasks", json=BODY))
            with pytest.raises(RuntimeError, match=CLOSED):
                kept["handle"].advance(10)
            with pytest.raises(RuntimeError, match=CLOSED):
                kept["handle"].faults.add("drop", endpoint="submit")
            with pytest.raises(RuntimeError, match=CLOSED):
                kept["hits"].hits
            # After its interception stopped, the old client goes where it went before: not
            # to this test's emulator.
            with pytest.raises(httpx.HTTPError):
                kept["intercepted"].post("/v1/images/tasks", json=BODY, timeout=0.5)
            kept["go"].set()
            kept["thread"].join(10)
            assert kept["outcome"] == {"error": CLOSED}
            assert image_emulator.requests() == []
            assert image_emulator.tasks == []
            assert image_emulator.usage["entries"] == []
            assert image_emulator.advance(0) == 0.0
            assert list(image_emulator.faults) == []
            # This test's own clients work as ever.
            client = image_emulator.client()
            assert client.post("/v1/images/tasks", json=BODY).json()["code"] == "success"
            assert len(image_emulator.requests()) == 1
        """,
    )
    result.assert_outcomes(passed=2)


def test_each_test_gets_its_own_markers_settings_however_it_asks_for_the_fixture(
    pytester: pytest.Pytester,
) -> None:
    # The fixture reads the marker of the test being set up (emulator/testing/plugin.py):
    # marked and unmarked tests alternate, a class marks its tests, and a test asks for the
    # fixture only during its call, after another test's setup.
    result = run(
        pytester,
        """
        import pytest

        BODY = {"model": "NanoBanana", "prompt": "x"}

        def envelope(handle):
            answer = handle.client().post("/v1/images/tasks", json=BODY).json()
            return "bare" if "status" in answer else "wrapped"

        @pytest.mark.image_emulator(envelope="bare")
        def test_1_marked(image_emulator):
            assert envelope(image_emulator) == "bare"

        def test_2_unmarked(image_emulator):
            assert envelope(image_emulator) == "wrapped"

        @pytest.mark.image_emulator(envelope="bare")
        def test_3_asks_during_its_call(request):
            assert envelope(request.getfixturevalue("image_emulator")) == "bare"

        def test_4_asks_during_its_call_unmarked(request):
            assert envelope(request.getfixturevalue("image_emulator")) == "wrapped"

        @pytest.mark.image_emulator(envelope="bare")
        class TestMarkedClass:
            def test_5_in_class(self, image_emulator):
                assert envelope(image_emulator) == "bare"

        def test_6_unmarked_again(image_emulator):
            assert envelope(image_emulator) == "wrapped"
        """,
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=6)
