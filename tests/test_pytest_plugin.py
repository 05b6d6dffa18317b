"""The pytest plugin, run by pytester in a subprocess as a downstream project would."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_the_emulators_own_modules_are_imported_as_they_are_and_the_users_tests_rewritten(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest rewrites the asserts of every module of a plugin's distribution, and loading
    # that way (its own cache, read by marshal.load from a file object) was a fifth of the
    # fixture's first setup (callgrind): the emulator's modules are imported as Python does,
    # while the user's test modules and conftests keep pytest's assertion messages.
    # The package on the path, as a regular install has it: pytest finds an editable
    # install's package only there (this venv's is not), and then marks it.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    pytester.makeconftest(
        """
        def same(a, b):
            assert a == b
        """
    )
    result = run(
        pytester,
        """
        import importlib

        from conftest import same

        def test_loaders():
            for name in ("emulator.usecases.emulator", "emulator.http.app"):
                loader = type(importlib.import_module(name).__spec__.loader)
                assert not loader.__module__.startswith("_pytest"), (name, loader)

        def test_users_asserts_still_rewritten(image_emulator):
            assert image_emulator.advance(0) == 1.5

        def test_users_conftest_still_rewritten():
            same([1, 2], [1, 3])
        """,
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*assert 0.0 == 1.5*", "*where 0.0 = *advance*"])
    result.stdout.fnmatch_lines(["*At index 1 diff: 2 != 3*"])


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
