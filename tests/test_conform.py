"""`python -m emulator conform` as a user meets it: what it needs, what it prints, what it writes,
what it costs, and that a run which checked nothing never passes.

Deviating services (the emulator behind one change) are in tests/drifts.py and are each caught in
tests/test_conform_drift.py; these tests are about the command itself.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from starlette.types import Scope

from emulator.cli import main
from emulator.conform import EXIT_DEVIATIONS, EXIT_ERROR, EXIT_NOT_CONFIGURED, EXIT_OK
from emulator.contract import contract_path

from .conform_support import (
    KEY,
    SECOND_KEY,
    Answer,
    Served,
    drift_app,
    json_request_edit,
    run_conform,
)

#: Negative data, submissions and every check, but few examples and no stateful phase.
FAST_FULL = ("--full", "--max-examples", "4", "--phases", "examples,coverage")
CAREFUL = ("--allow-generation", "--max-examples", "10")


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Serve the emulator behind one deviation; returns its base URL. Stopped after the test."""
    running: list[Served] = []

    def start(*args: Any, **kwargs: Any) -> str:
        running.append(Served(drift_app(*args, **kwargs)))
        return running[-1].base_url

    yield start
    for served in running:
        served.stop()


def conform(capsys: pytest.CaptureFixture[str], base_url: str, *extra: str) -> tuple[int, str]:
    return run_conform(base_url, *extra, capture=lambda: capsys.readouterr().out)


def _phases(out: str) -> dict[str, str]:
    return dict(re.findall(r"^conform: phase (\w+): (\w+)", out, re.M))


def _tasks(base_url: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = httpx.get(f"{base_url}/_emulator/tasks").json()["tasks"]
    return tasks


# -- what it needs ------------------------------------------------------------------------------
def test_without_a_base_url_conform_says_what_to_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGE_API_BASE_URL", raising=False)
    assert main(["conform"]) == EXIT_NOT_CONFIGURED
    out = capsys.readouterr().out
    assert "IMAGE_API_BASE_URL" in out and "IMAGE_API_KEY" in out


def test_without_schemathesis_conform_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import schemathesis` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "schemathesis", None)
    code = main(["conform", "--base-url", "http://127.0.0.1:9"])
    out = capsys.readouterr().out
    assert code == EXIT_ERROR, out
    assert "pip install 'image-task-emulator[conform]'" in out


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [
        ("--max-tasks", "-1", ">= 0"),
        ("--poll-deadline", "nan", "finite"),
        ("--max-response-time", "0", ">= 0.001"),
        ("--max-examples", "ten", "must be a number"),
    ],
)
def test_a_bad_flag_is_refused_naming_it(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, rule: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["conform", "--base-url", "http://127.0.0.1:9", flag, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and rule in err


def test_a_bad_rate_limit_is_refused_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["conform", "--base-url", "http://127.0.0.1:9", "--rate-limit", "fast"])
    assert code == EXIT_ERROR
    assert "--rate-limit must look like 2/s" in capsys.readouterr().out


def test_a_second_key_equal_to_the_first_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["conform", "--base-url", "http://127.0.0.1:9", "--api-key", "k"]
    assert main([*argv, "--second-api-key", "k"]) == EXIT_ERROR
    assert "--second-api-key must be another key" in capsys.readouterr().out


def test_an_unknown_phase_is_refused_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["conform", "--base-url", "http://127.0.0.1:9", "--phases", "examples,fuzz"])
    assert code == EXIT_ERROR
    assert "--phases: unknown phase(s) fuzz" in capsys.readouterr().out


# -- a run that checked nothing never passes (trust issue, defect 9) ----------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_key_is_could_not_run_not_a_pass(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = conform(capsys, serve(), "--api-key", "sk-not-the-key")
    assert code == EXIT_ERROR, out
    assert "no deviations" not in out
    assert "authentication failed" in out and "401" in out


def test_a_refused_connection_is_could_not_run_within_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    code, out = conform(capsys, f"http://127.0.0.1:{_closed_port()}")
    elapsed = time.monotonic() - started
    assert code == EXIT_ERROR, out
    assert elapsed < 5, f"took {elapsed:.1f} s"  # liveness bound, wide: it should take ~0.1 s
    assert "could not connect" in out and "connection refused" in out.lower()
    assert "--url" not in out  # schemathesis' tip names a flag conform does not have
    assert ": success" not in out


def test_a_run_without_one_successful_exchange_is_could_not_run(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    def unavailable(scope: Scope, request: bytes, answer: Answer) -> Answer:
        return 503, [(b"content-type", b"text/plain")], b"upstream unavailable"

    code, out = conform(capsys, serve(unavailable))
    assert code == EXIT_ERROR, out
    assert "no deviations" not in out
    assert "no successful exchange" in out


def test_a_wrong_base_url_is_could_not_run_with_a_hint(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A web server's own 404 page for every path: nothing there is the API.
    def elsewhere(scope: Scope, request: bytes, answer: Answer) -> Answer:
        return 404, [(b"content-type", b"text/html")], b"<h1>Not Found</h1>"

    code, out = conform(capsys, serve(elsewhere))
    assert code == EXIT_ERROR, out
    assert "no successful exchange" in out and "is the base URL the root of the API" in out


def test_every_phase_status_agrees_with_the_summary(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A budget of 2 tasks leaves later submissions unsent; that is not an error of the phase.
    code, out = conform(capsys, serve(), "--allow-generation", "--max-tasks", "2")
    phases = _phases(out)
    assert {"examples", "fuzzing"} <= set(phases), out
    summary = re.search(r"^Contract conformance of .*$", out, re.M)
    assert summary, out
    errors = re.search(r"(\d+) error\(s\)", summary.group(0))
    in_error = [name for name, status in phases.items() if status == "error"]
    if in_error:
        assert errors and int(errors.group(1)) >= len(in_error), out
        assert code != EXIT_OK, out
    else:
        assert code == EXIT_OK, out


def test_a_phase_that_could_not_check_is_an_error_in_the_summary(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Every poll of a task that exists loses its connection: no scenario can follow its task.
    def cut(scope: Scope, answer: Answer) -> bool:
        return answer[0] == 200 and scope["method"] == "GET" and "/v1/" in str(scope["path"])

    code, out = conform(capsys, serve(drop=cut), *CAREFUL)
    assert code == EXIT_DEVIATIONS, out
    assert _phases(out)["scenarios"] == "error", out
    errors = re.search(r"^Contract conformance of .*: \d+ deviation\(s\), (\d+) error", out, re.M)
    assert errors and int(errors.group(1)) >= 2, out
    assert "polling task_" in out


# -- what it prints and writes ------------------------------------------------------------------
def test_faithful_server_passes_and_the_report_is_written(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    code, out = conform(capsys, serve(), *FAST_FULL, "--report", str(tmp_path))
    assert code == EXIT_OK, out
    assert "no deviations" in out
    assert "no deviations" in (tmp_path / "summary.txt").read_text()
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    cases = {(c.get("classname"), c.get("name")) for c in suite.iter("testcase")}
    # One test case per operation and check, passing ones included.
    for case in [
        ("response_schema_conformance", "POST /v1/images/tasks"),
        ("response_schema_conformance", "GET /v1/images/tasks/{task_id}"),
        ("progress_monotone", "GET /v1/images/tasks/{task_id}"),
        ("near_miss_refused", "POST /v1/images/tasks"),
        ("result_picture_size", "GET result_url"),
        ("auth_required", "GET /v1/images/tasks/{task_id}"),
    ]:
        assert case in cases, sorted(cases)
    assert suite.get("failures") == "0" and int(suite.get("tests", "0")) == len(cases)
    # Without a second key, isolation is listed as not checked (skipped), never as passed.
    skipped = [c for c in suite.iter("testcase") if c.find("skipped") is not None]
    assert [c.get("classname") for c in skipped] == ["key_isolation"]


def test_a_deviation_is_a_failing_test_case_named_in_one_line(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    def pending(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, body = answer
        if status == 200 and scope["method"] == "GET" and "/v1/images/tasks/" in scope["path"]:
            data = json.loads(body)
            data["data"]["status"] = "pending"
            body = json.dumps(data).encode()
        return status, headers, body

    code, out = conform(capsys, serve(pending), *CAREFUL, "--report", str(tmp_path))
    assert code == EXIT_DEVIATIONS, out
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    failing = {
        (c.get("classname"), c.get("name")): c.find("failure")
        for c in suite.iter("testcase")
        if c.find("failure") is not None
    }
    failure = failing[("response_schema_conformance", "GET /v1/images/tasks/{task_id}")]
    assert failure is not None
    message = failure.get("message", "")
    assert "\n" not in message
    assert message.startswith("GET /v1/images/tasks/{task_id} answered 200")
    assert 'data/status: "pending" is not one of' in message
    # ...and the same line heads the summary.
    assert f"- [response_schema_conformance] {message}" in out
    # The keys never appear: curl commands mask them.
    written = out + (tmp_path / "junit.xml").read_text() + (tmp_path / "summary.txt").read_text()
    assert "Bearer ***" in written and KEY not in written


def test_long_phases_print_progress(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    from emulator.conformance import ConformOptions
    from emulator.conformance.engine import run_contract

    lines: list[str] = []
    options = ConformOptions.full(
        base_url=serve(), api_key=KEY, max_examples=3, progress_every=0, poll_interval=0
    )
    run_contract(options, on_progress=lines.append)
    assert any(re.match(r"  coverage: \d+ requests so far", line) for line in lines), lines
    finished = [line.split(":")[0] for line in lines if line.startswith("phase ")]
    assert finished == [
        "phase access",
        "phase near_misses",
        "phase scenarios",
        "phase examples",
        "phase coverage",
        "phase fuzzing",
        "phase stateful",
    ]


def test_wrong_image_content_type_is_named(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    from emulator.conformance.harness import reference_picture

    picture = reference_picture((4, 4))

    def gif_label(scope: Scope, request: bytes, answer: Answer) -> Answer:
        # Every result picture is served labelled with a type the contract does not list.
        if str(scope["path"]).startswith("/_emulator/results/"):
            return 200, [(b"content-type", b"image/gif")], picture
        return answer

    contract = str(contract_path("emulator"))
    code, out = conform(
        capsys,
        serve(gif_label),
        "--contract",
        contract,
        "--max-examples",
        "3",
        "--phases",
        "examples,fuzzing",
    )
    assert code == EXIT_DEVIATIONS, out
    assert any(
        line.startswith("  - [content_type_conformance] GET /_emulator/results/") and "gif" in line
        for line in out.splitlines()
    ), out


# -- what it costs ------------------------------------------------------------------------------
def test_default_run_against_a_live_service_only_reads(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve()
    code, out = conform(capsys, url, "--max-examples", "3")
    assert code == EXIT_OK, out
    assert "GET only" in out
    journal = httpx.get(f"{url}/_emulator/requests").json()["requests"]
    assert journal and {entry["method"] for entry in journal} == {"GET"}
    # What needs a submission is listed as not checked, not passed.
    assert "near_miss_refused @ POST /v1/images/tasks: needs --allow-generation" in out


def test_careful_run_spends_its_budget_on_the_scenarios_first(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve()
    code, out = conform(capsys, url, *CAREFUL, "--second-api-key", SECOND_KEY)
    assert code == EXIT_OK, out
    tasks = _tasks(url)
    assert [(t["task"]["model"], t["task"]["n"]) for t in tasks] == [
        ("NanoBanana2-0.5K", 1),
        ("gpt-image-2", 2),
        ("NanoBanana2-0.5K", 1),
    ]
    assert [t["task"]["task_type"] for t in tasks] == ["text2image", "text2image", "image2image"]
    # Each was polled to its end, then a few times more.
    assert all(t["task"]["polls"] >= 3 + 2 for t in tasks), [t["task"]["polls"] for t in tasks]
    assert "3 task(s) created" in out


def test_a_scenario_waiting_for_a_picture_keeps_its_place_in_the_budget(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # --full plans more scenarios than 3 tasks pay for; the image2image one (third) waits for
    # the first picture, and the ones after it must not take its task meanwhile.
    url = serve()
    code, out = conform(capsys, url, "--full", "--max-tasks", "3", "--phases", "examples")
    assert code == EXIT_OK, out
    made = [(t["task"]["model"], t["task"]["task_type"]) for t in _tasks(url)]
    assert made == [
        ("NanoBanana2-0.5K", "text2image"),
        ("gpt-image-2", "text2image"),
        ("NanoBanana2-0.5K", "image2image"),
    ]


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_a_careful_run_never_creates_more_than_max_tasks(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str], budget: int
) -> None:
    # A service that accepts every near miss (quietly fixing it): each costs a task.
    def accept_everything(body: dict[str, Any], scope: Scope) -> None:
        body.update(model="NanoBanana2-0.5K", prompt=body.get("prompt") or "x", n=1)
        for field in ("size", "aspect_ratio", "quality", "task_type", "output_format"):
            body.pop(field, None)

    url = serve(request=json_request_edit(accept_everything))
    code, out = conform(capsys, url, *CAREFUL, "--max-tasks", str(budget))
    assert code == EXIT_DEVIATIONS, out
    assert len(_tasks(url)) == budget, out
    assert f"{budget} task(s) created" in out
    assert "near miss" in out and "(task budget spent)" in out


def test_generation_run_creates_at_most_max_tasks_of_the_cheapest_models(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve()
    code, out = conform(capsys, url, "--allow-generation", "--max-tasks", "2")
    assert code == EXIT_OK, out
    tasks = _tasks(url)
    assert len(tasks) == 2
    assert {(t["task"]["model"], t["task"].get("quality")) for t in tasks} <= {
        ("NanoBanana2-0.5K", None),
        ("gpt-image-2", "low"),
    }
    assert "schemathesis' submissions: the task budget went to" in out


def test_submissions_are_refused_before_they_cost_anything(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Near misses a faithful service refuses cost nothing: the whole budget reaches scenarios.
    url = serve()
    code, out = conform(capsys, url, *CAREFUL)
    assert code == EXIT_OK, out
    journal = httpx.get(f"{url}/_emulator/requests").json()["requests"]
    posts = [e for e in journal if e["method"] == "POST" and e["path"] == "/v1/images/tasks"]
    assert len([e for e in posts if e["status"] == 200]) == 3
    assert len([e for e in posts if e["status"] in (400, 401)]) >= 10


def test_a_rate_limited_request_is_retried_not_judged(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Every other refusal comes back as a 429 first (a refusal: no task was made either way).
    turns = iter(range(1_000_000))

    def limit(scope: Scope, request: bytes, answer: Answer) -> Answer:
        if answer[0] in (400, 401, 404) and next(turns) % 2 == 0:
            body = {"code": "rate_limited", "message": "slow down", "data": None}
            headers = [(b"content-type", b"application/json"), (b"retry-after", b"0")]
            return 429, headers, json.dumps(body).encode()
        return answer

    code, out = conform(capsys, serve(limit), *CAREFUL, "--phases", "examples")
    assert code == EXIT_OK, out
    assert "no deviations" in out


def test_a_result_url_is_fetched_without_the_key(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[bytes | None] = []

    def spy(scope: Scope, request: bytes, answer: Answer) -> Answer:
        if any(k == b"content-type" and v.startswith(b"image/") for k, v in answer[1]):
            seen.append(dict(scope["headers"]).get(b"authorization"))
        return answer

    code, out = conform(capsys, serve(spy), *CAREFUL)
    assert code == EXIT_OK, out
    assert len(seen) == 4 and set(seen) == {None}  # 1 + 2 + 1 pictures, no key sent
