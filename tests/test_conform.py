"""`python -m emulator conform` as a user meets it: what it needs, what it prints and writes, and
that a run which checked nothing never passes.

What a run costs is in tests/test_conform_cost.py. Deviating services (the emulator behind one
change) are in tests/drifts.py and are each caught in tests/test_conform_drift.py.
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

from .conform_support import CAREFUL, KEY, Answer, Servers, run_conform

#: Negative data, submissions and every check, but few examples and no stateful phase.
FAST_FULL = ("--full", "--max-examples", "4", "--phases", "examples,coverage")


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Serve the emulator behind one deviation; returns its base URL. Stopped after the test."""
    with Servers() as servers:
        yield servers.start


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
        ("--request-deadline", "1e300", "at most 86400 seconds"),
        ("--poll-interval", "100000", "at most 86400 seconds"),
        ("--max-run-time", "1e9", "at most 604800 seconds"),
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
    assert "could not run: " in out and "is the base URL the root of the API" in out


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
    # Every request is counted under a phase named, the preflight's first (it had no name).
    assert lines[0].startswith("  preflight: 1 requests so far"), lines
    assert not any(line.startswith("  : ") for line in lines), lines
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
