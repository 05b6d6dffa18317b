"""redis-benchmark replays the commands a request sends (captured by
benchmarks/redis_monitor.py), and the plain commands the store uses: Redis's own speed and CPU
per call, without pipelining and 16 per pipeline (benchmarks/redis_capacity.py's step 2)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from typing import Any

from .redis_monitor import (
    PREFIX,
    WARM,
    Call,
    journal_entries,
    journal_row,
    script_names,
)
from .scaling import cpu_seconds

#: A write's deadline (ARGV[2] of every script, Redis TIME seconds) replayed later must not
#: have passed: arguments within this many seconds of the capture are deadlines.
DEADLINE_WINDOW = 60.0
#: Not on a request's path: loading scripts (once per Redis) and the control plane's clock.
OFF_PATH = ("SCRIPT", "ADVANCE")


def replayable(call: Call, captured_at: float, fresh_ids: bool) -> list[str]:
    """The call as redis-benchmark arguments: deadlines far ahead; with ``fresh_ids`` (a
    submission) each task id replaced by a new one per call (``__rand_int__`` becomes 12
    digits, so the id keeps its length)."""
    args = [a.decode() for a in call.args]
    for i, arg in enumerate(args):
        try:
            value = float(arg)
        except ValueError:
            continue
        if abs(value - captured_at) < DEADLINE_WINDOW:
            args[i] = repr(captured_at + 10 * 365 * 86400)
    if fresh_ids:
        fresh = "task_" + "0" * 20 + "__rand_int__"
        args = [re.sub(r"task_[0-9a-f]{32}", fresh, a) for a in args]
    return args


def redis_benchmark(
    port: int, args: list[str], requests: int, clients: int, pipeline: int
) -> dict[str, float]:
    """One redis-benchmark run of one command: ops/s and latency percentiles (ms)."""
    tool = shutil.which("redis-benchmark")
    if tool is None:
        raise RuntimeError("redis-benchmark is not installed (Debian: redis-tools)")
    cmd = [tool, "-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "-c", str(clients)]
    cmd += ["-P", str(pipeline), "--csv", "-r", "1000000000000", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    # The last line: "test","rps","avg","min","p50","p95","p99","max"; the test's name is the
    # command with its arguments (quotes and commas included): read the numbers from the right.
    values = out.strip().splitlines()[-1].rstrip('"').rsplit('","', 7)[1:]
    rps, avg, _min, p50, _p95, p99, _max = (float(v) for v in values)
    return {"ops_per_s": rps, "avg_ms": avg, "p50_ms": p50, "p99_ms": p99}


#: Plain commands the store sends outside scripts (reads out of a request, the id stream,
#: health), for comparison with the scripts: Redis's speed on this machine.
PLAIN = (
    ("PING", ["PING"]),
    ("HMGET task", ["HMGET", f"{PREFIX}:task:{{id}}", "d", "p", "e", "f"]),
    ("GET clock", ["GET", f"{PREFIX}:clock"]),
    ("INCR", ["INCR", "bench:counter"]),
)


def benchmarks(
    redis: tuple[int, int],
    steps: dict[str, list[Call]],
    journal: list[Call],
    task_id: str,
    args: Any,
) -> list[dict[str, Any]]:
    """redis-benchmark of each distinct call on a request's path, and of the plain commands;
    with redis-server's own CPU microseconds per call while it ran (``redis``: port, PID)."""
    port, pid = redis
    names = script_names()
    wanted: dict[str, list[str]] = {}
    captured_at = time.time()
    for step, calls in steps.items():
        for call in calls:
            label = call.name(names)
            if label.startswith(OFF_PATH) or (call.inner == [] and call.args[0] == b"EVALSHA"):
                continue  # off a request's path, or an EVALSHA answered NOSCRIPT
            fresh = step in (WARM, "submit")
            wanted.setdefault(label, replayable(call, captured_at, fresh))
    written = [c for c in journal if c.inner]  # not the attempts answered NOSCRIPT
    entries = {}
    if written:
        label = journal_row(journal_entries(written[0]))
        entries[label] = journal_entries(written[0])
        wanted.setdefault(label, replayable(written[0], captured_at, False))
    for label, command in PLAIN:
        wanted[label] = [a.replace("{id}", task_id) for a in command]
    rows = []
    for label, command in wanted.items():
        row: dict[str, Any] = {"command": label}
        if label in entries:
            row["journal_entries"] = entries[label]
        for pipeline in (1, 16):
            cpu = cpu_seconds(pid)
            result = redis_benchmark(port, command, args.requests, args.clients, pipeline)
            result["redis_cpu_us"] = (cpu_seconds(pid) - cpu) / args.requests * 1e6
            row[f"p{pipeline}"] = result
        rows.append(row)
    return rows
