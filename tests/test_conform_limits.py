"""What bounds a conform run, and flags refused before anything is sent: a trickling service ends
at the request deadline, the whole run at ``--max-run-time``; a ``--model`` the contract does not
submit, a ``--report`` that could not be written and an empty ``--phases`` are refused (exit 2)
before the first request.

The flags refused before a request are run against a closed port: had conform sent anything,
it would say "could not connect" instead.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator.cli import main
from emulator.conform import EXIT_DEVIATIONS, EXIT_ERROR

from .conform_support import CAREFUL, Answer, Servers, drift_app, is_poll, run_conform

#: Seconds between two bytes of a trickling answer: far below the 30 s per-read timeout (a
#: poll's ~150 bytes would take minutes).
TRICKLE = 1.0


@pytest.fixture
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


def conform(capsys: pytest.CaptureFixture[str], base_url: str, *extra: str) -> tuple[int, str]:
    return run_conform(base_url, *extra, capture=lambda: capsys.readouterr().out)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _trickle(inner: ASGIApp) -> ASGIApp:
    """``inner``, its head sent at once and its body a byte every TRICKLE seconds, until the
    client leaves."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await inner(scope, receive, capture)
        await send(start)
        body = b"".join(chunks)
        async with anyio.create_task_group() as tasks:

            async def until_gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tasks.cancel_scope.cancel()

            tasks.start_soon(until_gone)
            for i in range(len(body)):
                chunk = body[i : i + 1]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await anyio.sleep(TRICKLE)
            await send({"type": "http.response.body", "body": b""})
            tasks.cancel_scope.cancel()

    return app


# -- bounds -------------------------------------------------------------------------------------
def test_a_trickling_service_ends_at_the_request_deadline(
    servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    # The preflight's answer (~150 bytes) would take minutes; the deadline cuts it at 1 s.
    started = time.monotonic()
    code, out = conform(capsys, servers.serve(_trickle(drift_app())), "--request-deadline", "1")
    elapsed = time.monotonic() - started
    assert code == EXIT_ERROR, out
    assert "did not answer in time: no complete answer within 1 s (--request-deadline" in out
    assert "could not connect" not in out, out
    # A liveness bound, wide (a loaded machine takes seconds to load the contract): not minutes.
    assert elapsed < 60, f"took {elapsed:.1f} s"


def test_the_run_stops_at_max_run_time_and_says_so_once(
    servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every poll takes 0.3 s: the scenarios outlast a run bound of 1 s.
    def slow_polls(scope: Scope, answer: Answer) -> float:
        return 0.3 if is_poll(scope) else 0.0

    started = time.monotonic()
    code, out = conform(capsys, servers.start(delay=slow_polls), *CAREFUL, "--max-run-time", "1")
    elapsed = time.monotonic() - started
    assert code == EXIT_DEVIATIONS, out
    said = "the run's time is up (--max-run-time 1 s): what was left of it was not sent"
    assert out.count(said) == 1, out
    assert "phase examples" not in out, out  # schemathesis' phases were not started
    assert elapsed < 15, f"took {elapsed:.1f} s"  # liveness bound, wide


def test_a_run_whose_time_is_up_at_the_preflight_could_not_run_and_writes_its_report(
    servers: Servers, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The bound is spent before the preflight's first request: the run's usual end (the
    # summary, the report, exit 2), never main's catch-all.
    target = tmp_path / "report"
    code, out = conform(
        capsys, servers.start(), *CAREFUL, "--max-run-time", "0.000001", "--report", str(target)
    )
    assert code == EXIT_ERROR, out
    said = "could not run: the run's time is up (--max-run-time 1e-06 s)"
    assert said in out, out
    assert "RunTimeUp" not in out
    assert said in (target / "summary.txt").read_text()
    assert (target / "junit.xml").is_file()


# -- flags refused before any request ----------------------------------------------------------
@pytest.mark.parametrize("phases", [",", "", " , "])
def test_an_empty_phase_list_is_refused_naming_the_option(
    capsys: pytest.CaptureFixture[str], phases: str
) -> None:
    code = main(["conform", "--base-url", _closed_port_url(), "--phases", phases])
    out = capsys.readouterr().out
    assert code == EXIT_ERROR, out
    assert "--phases names no phase: give some of examples,coverage,fuzzing,stateful" in out


def test_a_model_the_contract_does_not_submit_is_refused_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = conform(capsys, _closed_port_url(), "--allow-generation", "--model", "nope")
    assert code == EXIT_ERROR, out
    assert "--model 'nope' is not a model the contract submits; one of: " in out, out
    assert "NanoBanana2-0.5K" in out and "gpt-image-2" in out
    assert "could not connect" not in out  # nothing was sent


@pytest.mark.parametrize("case", ["a file", "a file's child", "junit.xml a directory"])
def test_a_report_that_could_not_be_written_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    target: Callable[[], Path] = {
        "a file": lambda: taken,
        "a file's child": lambda: taken / "report",
        "junit.xml a directory": lambda: _mkdir(tmp_path / "report" / "junit.xml").parent,
    }[case]
    code, out = conform(capsys, _closed_port_url(), "--report", str(target()))
    assert code == EXIT_ERROR, out
    assert "--report " in out and "Traceback" not in out, out
    assert "could not connect" not in out  # refused before the run
    assert taken.read_text() == "not a directory"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_a_run_that_could_not_run_stays_exit_2_with_a_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "new" / "report"
    code, out = conform(capsys, _closed_port_url(), "--report", str(target))
    assert code == EXIT_ERROR, out
    assert "could not connect" in out
    assert "could not run" in (target / "summary.txt").read_text()
