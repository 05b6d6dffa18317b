"""The benchmark harness against a real emulator and real wrk: what it measures is real answers.

A rate made of error answers (a 404 is cheaper than a poll) is no result; these tests drive
``make bench``'s HTTP part (benchmarks/throughput.py) for a second per cell and check that no
cell is made of errors, and that wrk's script says which status codes the errors were.
The speed itself is measured by the benchmarks, never here.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import load, servers, throughput


@pytest.fixture(autouse=True)
def _wrk_is_installed() -> None:
    # Never a skip: `make setup` installs wrk; a machine without it fails here, saying why.
    assert shutil.which("wrk"), "wrk is not installed: run `make setup` (apt-get install wrk)"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[servers.Server]:
    server = servers.emulator(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_wrk_reports_the_status_code_of_every_error_answer(
    emulator: servers.Server, tmp_path: Path
) -> None:
    ids = tmp_path / "unknown.ids"
    ids.write_text("task_" + "0" * 32 + "\n")  # no such task: every poll answers 404
    run = load.run_wrk(str(shutil.which("wrk")), emulator, "poll", 2, 1.0, ids, 0)
    assert run["requests"] > 0
    assert run["statuses"] == {"404": run["requests"]}
    assert run["errors"] == run["requests"]
    # The server's CPU per answer was measured: a Python server spends tens of µs at least.
    assert run["cpu_us"] is not None and 10 < run["cpu_us"] < 1_000_000


def test_no_workload_measures_tasks_another_workload_evicted(tmp_path: Path) -> None:
    # A store of 1000 tasks: a second of submissions evicts tasks prepared before it, as
    # 100,000 do on `make bench`'s defaults over its minutes of submissions.
    args = argparse.Namespace(
        servers="emulator",
        connections="1",
        runs=1,
        target_runs=1,
        duration=1.0,
        warmup=1.0,
        warmup_max=1.0,
    )
    try:
        http = throughput.http_benchmarks(
            args, tmp_path, emulator_env={"EMULATOR_MAX_TASKS": "1000"}
        )
    finally:
        servers.stop_all()
    cells = http["results"]["emulator"]
    assert set(cells) == {"submit", "poll", "mixed"}
    errors = {w: (c["1"]["errors"], c["1"].get("statuses")) for w, c in cells.items()}
    assert errors == {w: (0, {}) for w in cells}, errors
