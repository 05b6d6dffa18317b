"""A check that cannot tell is an error, never a pass: what counts as an answer (`evidence`),
how the report shows a check that could not check, and the runs that cannot tell a task API
from a gateway or a base URL one level off. The services conform cannot judge are in
tests/drift_blind.py (run by tests/test_conform_drift.py and tests/drift_full.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from emulator.conform import EXIT_DEVIATIONS, EXIT_ERROR
from emulator.conformance import Report
from emulator.conformance.evidence import (
    NO_CREDIT,
    RATE_LIMITED,
    refusal_of,
    refused_phase,
    signature,
)

from .conform_support import CAREFUL, Servers, run_conform
from .drift_blind import every_task_fails, gateway_answers_every_path_alike


@pytest.fixture
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


# -- what counts as an answer ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, b'{"code":"rate_limited","message":"slow down","data":null}', RATE_LIMITED),
        (429, b"", RATE_LIMITED),
        (403, b'{"code":"insufficient_quota","message":"no","data":null}', NO_CREDIT),
        # OpenAI-style relays say it in error.code, some with a 429.
        (429, b'{"error":{"code":"insufficient_quota","message":"quota"}}', NO_CREDIT),
        (402, b"payment required", NO_CREDIT),
        (403, b'{"error":{"code":"invalid_api_key"}}', None),
        (400, b'{"code":"insufficient_quota"}', None),
        (404, b'{"code":"task_not_found"}', None),
    ],
)
def test_refusals_are_told_from_answers(status: int, body: bytes, kind: str | None) -> None:
    assert refusal_of(status, body) == kind


def test_a_not_found_is_told_apart_by_status_media_type_and_code_not_message() -> None:
    task = signature(404, "application/json", b'{"code":"task_not_found","message":"task_1"}')
    other_id = signature(404, "application/json; charset=utf-8", b'{"code":"task_not_found"}')
    no_route = signature(404, "application/json", b'{"code":"not_found","message":"no route"}')
    assert task == other_id and task != no_route
    assert signature(404, "text/html", b"<h1>x</h1>") != task


def test_a_phase_of_mostly_refusals_could_not_check() -> None:
    assert refused_phase(10, Counter()) is None
    assert refused_phase(10, Counter({RATE_LIMITED: 4})) is None
    said = refused_phase(10, Counter({RATE_LIMITED: 4, NO_CREDIT: 1}))
    assert said == "5 of its 10 answers were refusals (4 x 429 rate limited, 1 x no credit " + (
        "(insufficient_quota))"
    )


def test_a_check_that_could_not_check_is_an_error_case_never_skipped() -> None:
    report = Report(target="t")
    report.passed("result_picture_size", "GET result_url")
    report.could_not_check("result_picture_size", "GET result_url", "its task task_1 ended failed")
    report.cannot_check("key_isolation", "GET x", "needs a second key")
    assert not report.ok and report.exit_code == EXIT_DEVIATIONS
    assert report.headline() == "0 deviation(s), 1 error(s)"
    assert "could not check result_picture_size @ GET result_url: its task" in report.summary()
    suite = ElementTree.fromstring(report.junit().split("\n", 1)[1])
    cases = {c.get("classname"): c for c in suite.iter("testcase")}
    error = cases["result_picture_size"].find("error")
    assert error is not None and "ended failed" in error.get("message", "")
    assert cases["key_isolation"].find("skipped") is not None  # deliberately not run


# -- failed tasks: the checks they feed are errors in JUnit too (review r11 A2) -----------------
def test_failed_tasks_leave_their_checks_as_errors_in_junit(
    servers: Servers, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = run_conform(
        servers.serve(every_task_fails()),
        *CAREFUL,
        "--phases",
        "examples",
        "--report",
        str(tmp_path),
        capture=lambda: capsys.readouterr().out,
    )
    assert code == EXIT_DEVIATIONS, out
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    errors = {
        (c.get("classname"), c.get("name"))
        for c in suite.iter("testcase")
        if c.find("error") is not None
    }
    for check in ("result_picture_served", "result_picture_size", "result_picture_format"):
        assert (check, "GET result_url") in errors, sorted(errors)
    assert ("result_count_matches_n", "GET /v1/images/tasks/{task_id}") in errors
    assert suite.get("failures") == "0"


# -- a task API, or nothing (review r11 A3, B9) ------------------------------------------------
def test_a_get_only_run_against_a_gateway_answering_every_path_alike_could_not_run(
    servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_conform(
        servers.serve(gateway_answers_every_path_alike()),
        "--max-examples",
        "2",
        capture=lambda: capsys.readouterr().out,
    )
    assert code == EXIT_ERROR, out
    assert "answers an unknown task exactly as a path no API has (404 task_not_found)" in out
    assert "is the base URL the root of the API" in out and "no deviations" not in out


@pytest.mark.parametrize("generation", [(), ("--allow-generation", "--phases", "examples")])
@pytest.mark.parametrize("suffix", ["/v1", "/api"])
def test_a_base_url_one_level_off_could_not_run_with_the_hint(
    servers: Servers, capsys: pytest.CaptureFixture[str], suffix: str, generation: tuple[str, ...]
) -> None:
    code, out = run_conform(
        servers.start() + suffix,
        "--max-examples",
        "2",
        *generation,
        capture=lambda: capsys.readouterr().out,
    )
    assert code == EXIT_ERROR, out
    assert "could not run: " in out and "is the base URL the root of the API" in out, out
    assert "[auth_required]" not in out  # a 404 of a missing route is not judged as the API's
