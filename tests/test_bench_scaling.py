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
