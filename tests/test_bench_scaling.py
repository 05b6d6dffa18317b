"""benchmarks/scaling.py's own arithmetic: the emulator's CPU is read over its whole process
tree (uvicorn's ``--workers`` are children of the process the benchmark started)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import scaling

# A parent that starts a child burning CPU, then both wait to be stopped.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
time.sleep(60)
"""
CHILD = """
import time
x = 0
while x < 5_000_000:
    x += 1
time.sleep(60)
"""


def _children(pid: int) -> list[int]:
    return [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]


def test_the_emulators_cpu_counts_every_process_under_the_one_started() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD])
    try:
        deadline = time.monotonic() + 30
        while True:  # bounded: until the child has burnt what it burns
            children = _children(parent.pid)
            if children and scaling.cpu_seconds(children[0]) >= 0.05:
                break
            assert time.monotonic() < deadline, "the child process did not run"
            time.sleep(0.05)
        child = scaling.cpu_seconds(children[0])
        alone = scaling.cpu_seconds(parent.pid)
        assert scaling.tree_cpu_seconds(parent.pid) >= alone + child
    finally:
        for pid in _children(parent.pid):
            os.kill(pid, signal.SIGTERM)
        parent.terminate()
        parent.wait(10)


def _round(polls: float, submits: float, errors: int, redis_us: float | None) -> dict[str, object]:
    return {
        "store": "redis",
        "workers": 2,
        "polls_per_s": polls,
        "submits_per_s": submits,
        "round_trips_per_poll": None,
        "redis_cpu_us_per_poll": redis_us,
        "errors": errors,
    }


def test_a_configurations_rounds_give_medians_summed_errors_and_each_rounds_rate() -> None:
    row = scaling.merged(
        [
            _round(3456.0, 2297.0, 0, 53.0),
            _round(4611.0, 2439.0, 2, 51.9),
            _round(4400, 2400, 0, 50),
        ]
    )
    assert (row["store"], row["workers"]) == ("redis", 2)
    assert row["polls_per_s"] == 4400  # the median, not the last round nor the mean
    assert row["submits_per_s"] == 2400
    assert row["errors"] == 2  # any round's errors make the row invalid
    assert row["redis_cpu_us_per_poll"] == 51.9
    assert row["round_trips_per_poll"] is None
    assert row["rounds_polls_per_s"] == [3456.0, 4611.0, 4400]


def test_a_figure_some_round_did_not_measure_is_unknown_not_the_median_of_the_others() -> None:
    row = scaling.merged([_round(1.0, 1.0, 0, 53.0), _round(2.0, 2.0, 0, None)])
    assert row["redis_cpu_us_per_poll"] is None
