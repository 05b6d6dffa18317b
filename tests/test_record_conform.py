"""``conform --cassette DIR``: a recording checked against the contract offline, with the same
checks and report as a live run, and each x-assumption judged."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from emulator.cli import main

from .parity_support import recorded, write_cassette
from .record_support import SUBMISSIONS, Driver, real_service, recorder, serving

DOOMED = {"model": "NanoBanana2-0.5K", "prompt": "a doomed picture"}


def _record(directory: Path, deviate: bool, **settings: object) -> None:
    with serving(real_service(deviate, **settings)) as upstream:
        rule = {
            "match": {"prompt_contains": "doomed"},
            "effect": {"kind": "fail_task", "code": "content_policy_violation", "at_progress": 50},
        }
        assert httpx.post(f"{upstream}/_emulator/faults", json=rule).status_code == 201
        with recorder(upstream, directory, record_results=True) as proxy:
            driver = Driver(proxy)
            for body in [*SUBMISSIONS, DOOMED]:
                driver.follow(body)
            driver.submit({"model": "NanoBanana2-0.5K", "prompt": "x", "n": 9})  # refused
            driver.submit({"model": "NanoBanana2-0.5K", "prompt": "\u3000 "})  # refused (D-12)
            driver.submit({"model": "NanoBanana2-0.5K", "prompt": "x", "sise": "1K"})  # D-13
            driver.poll("task_unknown")
            Driver(proxy, key=None).poll("task_unknown")
            driver.close()


@pytest.fixture(scope="module")
def deviating(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("deviating")
    _record(directory, deviate=True)
    return directory


def _conform(capsys: pytest.CaptureFixture[str], directory: Path, *extra: str) -> tuple[int, str]:
    code = main(["conform", "--cassette", str(directory), *extra])
    return code, capsys.readouterr().out


def test_the_seeded_deviation_is_caught_and_named(
    deviating: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("conform --cassette sent a request")

    monkeypatch.setattr(httpx.Client, "send", no_network)
    monkeypatch.setattr(httpx.AsyncClient, "send", no_network)
    code, out = _conform(capsys, deviating)
    assert code == 1
    assert "[progress_monotone] progress went from " in out
    assert "% to 10% between two polls of task_" in out
    deviations = out.split("Deviations:")[1].split("\n\n")[0]
    named = {line.split("]")[0].strip(" -[") for line in deviations.splitlines() if "[" in line}
    # The deviation, and what the real service's settings (errors as text) contradict.
    assert named == {"progress_monotone", "response_schema_conformance", "x-assumption"}


def test_each_assumption_is_confirmed_contradicted_or_untouched(
    deviating: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = _conform(capsys, deviating)
    verdicts = {
        line.split(":")[0].strip(): line.split(":")[1].split("(")[0].strip()
        for line in out.split("== x-assumption against the recordings")[1].splitlines()
        if line.startswith("  ") and ":" in line
    }
    assert verdicts == {
        "D-1": "confirms",
        "D-2": "confirms",
        "D-3": "confirms",
        "D-4": "contradicts",
        "D-5": "confirms",
        "D-6": "does not touch",
        "D-7": "confirms",
        "D-8": "does not touch",
        "D-9": "confirms",
        "D-11": "confirms",
        "D-12": "confirms",  # the blank prompt was refused naming prompt
        "D-13": "confirms",  # the misspelt field was ignored, the task accepted
        "SPEC 2.6": "confirms",
    }
    assert 'task answers are bare task objects (envelope = "bare")' in out
    assert "a failed task's error is the text" in out and '(error_shape = "string")' in out


def test_the_report_is_a_live_run_s_report(
    deviating: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = _conform(capsys, deviating, "--report", str(tmp_path))
    assert code == 1 and f"report written to {tmp_path}/junit.xml" in out
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    cases = {(c.get("classname"), c.get("name")): c for c in suite}
    assert (
        cases[("progress_monotone", "GET /v1/images/tasks/{task_id}")].find("failure") is not None
    )
    assert cases[("status_order", "GET /v1/images/tasks/{task_id}")].find("failure") is None
    assert cases[("x-assumption", "D-4")].find("failure") is not None
    assert cases[("x-assumption", "D-8")].find("skipped") is not None
    for check in ("result_picture_format", "result_picture_size", "auth_required"):
        assert any(k[0] == check and v.find("failure") is None for k, v in cases.items()), check
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.startswith("Contract conformance of the cassette ")
    assert "== x-assumption against the recordings" in summary


def test_a_faithful_recording_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _record(tmp_path, deviate=False, envelope="wrapped", error_shape="object")
    code, out = _conform(capsys, tmp_path)
    assert code == 0, out
    assert ": no deviations" in out.splitlines()[0]


def test_a_folder_without_a_cassette_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _conform(capsys, tmp_path)
    assert code == 2
    assert "conform: could not run:" in out and "cassette.jsonl is missing" in out


def test_cassette_and_base_url_are_not_mixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _conform(capsys, tmp_path, "--base-url", "http://127.0.0.1:1")
    assert code == 2 and "--cassette checks a recording; it takes no --base-url" in out


def test_what_a_recording_does_not_show_is_never_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A task polled once, still processing: neither its end nor its pictures were recorded.
    write_cassette(tmp_path / "c", recorded("processing"))
    code, out = _conform(capsys, tmp_path / "c", "--report", str(tmp_path / "r"))
    assert code == 1, out
    assert "could not check result_count_matches_n @ GET /v1/images/tasks/{task_id}, " in out
    assert "the recording never saw task_000001 end (its last poll says 'processing')" in out
    suite = ElementTree.parse(tmp_path / "r" / "junit.xml").getroot()
    cases = {(c.get("classname"), c.get("name")): c for c in suite}
    for check in ("terminal_final", "result_count_matches_n"):
        assert cases[(check, "GET /v1/images/tasks/{task_id}")].find("error") is not None, check
    assert cases[("status_order", "GET /v1/images/tasks/{task_id}")].find("error") is None


def test_an_end_seen_once_does_not_pass_terminal_final(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The client stopped at the end: nothing shows the task stays final (not checked, no error).
    write_cassette(tmp_path / "c", recorded("processing", "succeeded"))
    _, out = _conform(capsys, tmp_path / "c", "--report", str(tmp_path / "r"))
    suite = ElementTree.parse(tmp_path / "r" / "junit.xml").getroot()
    cases = {(c.get("classname"), c.get("name")): c for c in suite}
    assert cases[("terminal_final", "GET /v1/images/tasks/{task_id}")].find("skipped") is not None
    assert "no poll of task_000001 was recorded after its end" in out
    result_count = cases[("result_count_matches_n", "GET /v1/images/tasks/{task_id}")]
    assert result_count.find("error") is None and result_count.find("failure") is None
