"""The pytest plugin's fixtures in use (a task run to its end, settings by marker and fixture,
steering and faults, the live server, xdist, the journal's filters, how the emulator's modules
are imported), run by pytester in a subprocess as a downstream project would. That each test
gets an emulator of its own: tests/test_plugin_isolation.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from .pytester_support import run

pytest_plugins = ["pytester"]


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
