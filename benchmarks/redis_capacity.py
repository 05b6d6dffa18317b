"""What one Redis carries: the Redis store's commands and scripts measured by Redis itself.

    .venv/bin/python -m benchmarks.redis_capacity [--seconds 5] [--requests 20000] [--json FILE]

1. **What a request sends.** A redis-server of its own (loopback, free port) and one
   ``python -m emulator serve --store redis://…`` (manual clock). With ``MONITOR`` on, it
   submits a task, polls it while it runs, advances the clock, polls it once it has ended (the
   poll that settles its charge) and once more; markers (``ECHO``) between the steps tell which
   commands each request sent, and the commands Redis ran inside each script.
2. **redis-benchmark** replays those very commands (``EVALSHA`` with the captured keys and
   arguments; a write's deadline moved far ahead so that it runs, each submission under a new
   task id via ``__rand_int__``), plus the plain commands the store uses, at ``--clients``
   connections without pipelining (how the emulator talks to Redis) and with 16 per pipeline.
3. **Cost under load.** wrk drives polls, then submissions, at one worker on that Redis; per
   request: round trips (the store's ``round_trips`` counter in ``/_emulator/health``), the
   worker's and redis-server's CPU microseconds (/proc).
4. **On paper.** From 3: the requests per second at which Redis's one thread is busy all the
   time, one worker's requests per second on a core of its own, and so how many workers (and
   hosts of 4, 8, 16 cores) one Redis carries.

The scripts' names come from the Redis store's modules of scripts when they can be imported
(internal modules, found by benchmarks/internals.py: without them the scripts are named by
their SHA-1). Everything
started here is stopped by PID. Loopback only.

Step 1 is benchmarks/redis_monitor.py's, 2 benchmarks/redis_replay.py's, 4 and the report
benchmarks/redis_capacity_report.py's; this module starts the servers, measures 3 and runs it
all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from .redis_capacity_report import markdown, on_paper
from .redis_monitor import HEADERS, PREFIX, capture
from .redis_replay import benchmarks
from .scaling import (
    BODY,
    cores,
    cpu_seconds,
    free_port,
    health_round_trips,
    run_wrk,
    start_redis,
    stop,
    wait_until,
    wrk_lua,
)


def start_emulator(redis_port: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "emulator", "serve", "--port", str(port), "--seed", "1"]
    command += ["--clock", "manual", "--log-level", "warning", "--store-prefix", PREFIX]
    command += ["--store", f"redis://127.0.0.1:{redis_port}/0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/_emulator/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, "the emulator")
    return process, base


def load_cost(base: str, redis_pid: int, worker_pid: int, seconds: float) -> dict[str, Any]:
    """Per request under wrk (32 connections): round trips, worker and Redis CPU µs."""
    task_id = httpx.post(f"{base}/v1/images/tasks", content=BODY, headers=HEADERS).json()
    target = f"{base}/v1/images/tasks/{task_id['data']['task_id']}"
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="redis-capacity-") as tmp:
        folder = Path(tmp)
        run_wrk(target, wrk_lua(folder, "GET"), 32, 1.0)  # warm-up
        for name, url, method in (
            ("poll", target, "GET"),
            ("submit", f"{base}/v1/images/tasks", "POST"),
        ):
            trips = health_round_trips(base)
            worker, redis = cpu_seconds(worker_pid), cpu_seconds(redis_pid)
            requests, elapsed, errors = run_wrk(url, wrk_lua(folder, method), 32, seconds)
            worker, redis = cpu_seconds(worker_pid) - worker, cpu_seconds(redis_pid) - redis
            after = health_round_trips(base)
            out[name] = {
                "requests_per_s": requests / elapsed,
                "errors": errors,
                # the health call itself is one round trip (a PING)
                "round_trips": None
                if trips is None or after is None
                else (after - trips - 1) / requests,
                "worker_cpu_us": worker / requests * 1e6,
                "redis_cpu_us": redis / requests * 1e6,
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.redis_capacity", description=__doc__
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per load measurement")
    parser.add_argument("--requests", type=int, default=50_000, help="calls per redis-benchmark")
    parser.add_argument("--clients", type=int, default=32, help="redis-benchmark connections")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    args.seconds = max(1.0, min(args.seconds, 60.0))
    with tempfile.TemporaryDirectory(prefix="redis-capacity-") as tmp:
        redis_server, redis_port = start_redis(Path(tmp))
        try:
            emulator, base = start_emulator(redis_port)
            try:
                steps, journal, task_id = capture(redis_port, base)
                entries = len(httpx.get(f"{base}/_emulator/requests").json()["requests"])
                cost = load_cost(base, redis_server.pid, emulator.pid, args.seconds)
            finally:
                stop(emulator)
            rows = benchmarks((redis_port, redis_server.pid), steps, journal, task_id, args)
            version = (
                subprocess.run(
                    ["redis-server", "--version"], capture_output=True, text=True, check=False
                )
                .stdout.split()[2]
                .removeprefix("v=")
            )
        finally:
            stop(redis_server)
    data: dict[str, Any] = {
        "cores": cores(),
        "redis_version": version,
        "clients": args.clients,
        "requests": args.requests,
        "seconds": args.seconds,
        "journal_entries": entries,
        "round_trips_per_step": {k: len(v) for k, v in steps.items()},
        "redis_benchmark": rows,
        "cost": cost,
        "paper": on_paper(cost, steps, rows),
        "_steps": steps,
        "_journal": journal,
    }
    print(markdown(data))
    if args.json:
        public = {k: v for k, v in data.items() if not k.startswith("_")}
        args.json.write_text(json.dumps(public, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
