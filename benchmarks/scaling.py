"""Throughput of one emulator in memory, on Redis, and as several workers on Redis.

    .venv/bin/python -m benchmarks.scaling [--seconds 5] [--rounds 3] [--connections 32]
        [--json FILE]

Starts its own redis-server (a temp dir, no persistence, a free loopback port) and, per
configuration, ``python -m emulator serve`` on a free loopback port; drives polls and then
submissions with wrk (or, without wrk, an httpx client) for a bounded time; stops everything it
started by PID. Every configuration is measured ``--rounds`` times, round by round (each
figure the median of its rounds). Configurations: 1 worker in memory, 1 and 2 workers on
Redis, and 4 workers on Redis where this machine has at least 4 cores (on fewer, 4 workers
would only measure the scheduler: docs/scaling.md works the figure out on paper instead).

Prints a Markdown table: requests per second; Redis round trips per request as the emulator
counts them (``/_emulator/health`` -> ``store.round_trips``; with several workers each health
answer comes from one of them, so that column is left empty there); the Redis commands per
request as Redis counts them (``INFO commandstats``; a script is one call plus the commands it
runs); redis-server's own CPU time per request, and the emulator's (every worker process
together), both from /proc: on a machine shared with other work, CPU per request moves far less
than requests per second. ``--json`` also writes the
figures for ``make bench``'s targets. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import redis

KEY = "sk-bench-scaling"
BODY = '{"model":"NanoBanana","prompt":"a lighthouse at dusk"}'


def configs(cores: int) -> list[tuple[str, int]]:
    """What to measure: 4 workers only where there are 4 cores for them."""
    wanted = [("memory", 1), ("redis", 1), ("redis", 2)]
    return [*wanted, ("redis", 4)] if cores >= 4 else wanted


def cores() -> int:
    return len(os.sched_getaffinity(0))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc/PID/stat, fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and every process under it (uvicorn's workers, with
    ``--workers``), those alive now."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, then wait (SIGKILL if it will not go)."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


def wait_until(check: object, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.05)


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (make setup installs it)")
    port = free_port()
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_until(answers, "redis-server")
    return process, port


def redis_calls(port: int) -> int:
    """Commands Redis has executed so far (scripts, and the commands inside them)."""
    with redis.Redis(port=port, protocol=2) as client:
        stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


@dataclass
class Phase:
    requests: int
    seconds: float
    errors: int
    round_trips: int | None
    calls: int | None
    redis_cpu: float | None
    worker_cpu: float | None = None

    @property
    def redis_us(self) -> float | None:
        """redis-server's CPU microseconds per request."""
        return None if self.redis_cpu is None else self.redis_cpu / self.requests * 1e6

    @property
    def worker_us(self) -> float | None:
        """The emulator's CPU microseconds per request (all its workers together)."""
        return None if self.worker_cpu is None else self.worker_cpu / self.requests * 1e6

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk_lua(folder: Path, method: str) -> Path:
    script = folder / f"{method}.lua"
    lines = [f'wrk.method = "{method}"', f'wrk.headers["Authorization"] = "Bearer {KEY}"']
    if method == "POST":
        lines += ['wrk.headers["Content-Type"] = "application/json"', f"wrk.body = '{BODY}'"]
    script.write_text("\n".join(lines) + "\n")
    return script


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> tuple[int, float, int]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    args = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if done is None:
        raise RuntimeError(f"wrk said: {out}")
    elapsed = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    # Errors: answers that are not 2xx or 3xx, and socket errors (connect, read, write, timeout).
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    failed = int(errors.group(1)) if errors else 0
    failed += sum(int(n) for n in sockets.groups()) if sockets else 0
    return int(done.group(1)), elapsed, failed


async def httpx_load(
    url: str, method: str, connections: int, seconds: float
) -> tuple[int, float, int]:
    """The fallback load generator: ``connections`` keep-alive clients, bounded in time."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    counts = [0, 0]
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                response = await client.request(
                    method, url, content=BODY if method == "POST" else None
                )
                counts[0] += 1
                counts[1] += response.status_code >= 400

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
    return counts[0], time.monotonic() - started, counts[1]


def health_round_trips(base: str) -> int | None:
    store = httpx.get(f"{base}/_emulator/health", timeout=10).json()["store"]
    trips = store.get("round_trips")
    return trips if isinstance(trips, int) else None


def measure(
    base: str,
    target: str,
    method: str,
    args: argparse.Namespace,
    folder: Path,
    redis_port: int | None,
    workers: int,
    redis_pid: int | None = None,
    emulator_pid: int | None = None,
) -> Phase:
    trips = health_round_trips(base) if workers == 1 else None
    calls = redis_calls(redis_port) if redis_port else None
    cpu = cpu_seconds(redis_pid) if redis_pid else None
    worker = tree_cpu_seconds(emulator_pid) if emulator_pid else None
    if shutil.which("wrk"):
        requests, seconds, errors = run_wrk(
            target, wrk_lua(folder, method), args.connections, args.seconds
        )
    else:
        requests, seconds, errors = asyncio.run(
            httpx_load(target, method, args.connections, args.seconds)
        )
    after_cpu = cpu_seconds(redis_pid) if redis_pid else None
    after_worker = tree_cpu_seconds(emulator_pid) if emulator_pid else None
    after_trips = health_round_trips(base) if workers == 1 else None
    after_calls = redis_calls(redis_port) if redis_port else None
    return Phase(
        requests,
        seconds,
        errors,
        None if trips is None or after_trips is None else after_trips - trips - 1,
        None if calls is None or after_calls is None else after_calls - calls,
        None if cpu is None or after_cpu is None else after_cpu - cpu,
        None if worker is None or after_worker is None else after_worker - worker,
    )


def bench_one(
    store: str,
    workers: int,
    shared: tuple[int, int] | None,
    args: argparse.Namespace,
    folder: Path,
) -> tuple[Phase, Phase]:
    """``shared``: the port and PID of the redis-server (None: in memory)."""
    redis_port, redis_pid = shared if shared else (None, None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"redis://127.0.0.1:{redis_port}/0" if store == "redis" else "memory"
    command = [sys.executable, "-m", "emulator", "serve", "--port", str(port), "--seed", "1"]
    command += ["--clock", "manual", "--log-level", "warning", "--store", url]
    command += ["--store-prefix", f"bench-{store}-{workers}", "--workers", str(workers)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/_emulator/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, "the emulator")
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        created = httpx.post(f"{base}/v1/images/tasks", content=BODY, headers=headers, timeout=10)
        task_url = f"{base}/v1/images/tasks/{created.json()['data']['task_id']}"
        # Warm up (every worker up, connections and scripts loaded), then measure.
        warm = argparse.Namespace(**{**vars(args), "seconds": 1.0})
        measure(base, task_url, "GET", warm, folder, None, 2)
        facts = (folder, redis_port, workers, redis_pid, process.pid)
        poll = measure(base, task_url, "GET", args, *facts)
        submit = measure(base, f"{base}/v1/images/tasks", "POST", args, *facts)
        return poll, submit
    finally:
        stop(process)


def _row(store: str, workers: int, poll: Phase, submit: Phase) -> dict[str, object]:
    def per(phase: Phase, value: int | None) -> float | None:
        return None if value is None else value / phase.requests

    return {
        "store": store,
        "workers": workers,
        "polls_per_s": poll.rate,
        "submits_per_s": submit.rate,
        "round_trips_per_poll": per(poll, poll.round_trips),
        "round_trips_per_submit": per(submit, submit.round_trips),
        "redis_calls_per_poll": per(poll, poll.calls),
        "redis_calls_per_submit": per(submit, submit.calls),
        "redis_cpu_us_per_poll": poll.redis_us,
        "redis_cpu_us_per_submit": submit.redis_us,
        "worker_cpu_us_per_poll": poll.worker_us,
        "worker_cpu_us_per_submit": submit.worker_us,
        "errors": poll.errors + submit.errors,
    }


def merged(rounds: list[dict[str, object]]) -> dict[str, object]:
    """One configuration's row from its rounds: each figure the median of the rounds that
    measured it, the errors summed, and each round's polls/s and submits/s kept. One run of
    5 s moved the 2-worker ratio by more than the 5 % it is judged on (docs/benchmarks.md)."""
    row: dict[str, object] = {}
    for key, value in rounds[0].items():
        values = [r[key] for r in rounds]
        if key == "errors":
            row[key] = sum(int(cast(int, v)) for v in values)
        elif isinstance(value, float | int) and not isinstance(value, bool) and key != "workers":
            known = [float(cast(float, v)) for v in values if isinstance(v, float | int)]
            row[key] = statistics.median(known) if len(known) == len(values) else None
        else:
            row[key] = value
    row["rounds_polls_per_s"] = [r["polls_per_s"] for r in rounds]
    row["rounds_submits_per_s"] = [r["submits_per_s"] for r in rounds]
    return row


def _text(value: object, digits: int = 2) -> str:
    return "-" if not isinstance(value, float | int) else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every configuration, one after the other (default 3; medians)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    args.seconds = max(1.0, min(args.seconds, 60.0))  # bounded
    args.rounds = max(1, min(args.rounds, 9))  # bounded
    loader = "wrk -t1" if shutil.which("wrk") else "httpx"
    measured: dict[tuple[str, int], list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="emulator-scaling-") as tmp:
        folder = Path(tmp)
        redis_server, redis_port = start_redis(folder)
        try:
            # Round by round, every configuration in turn: whatever else the machine does
            # then falls on all of them alike, as the HTTP part's rotating runs do.
            for round_ in range(args.rounds):
                for store, workers in configs(cores()):
                    print(
                        f"round {round_ + 1}: measuring {store} x{workers} ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    where = (redis_port, redis_server.pid) if store == "redis" else None
                    phases = bench_one(store, workers, where, args, folder)
                    measured.setdefault((store, workers), []).append(_row(store, workers, *phases))
        finally:
            stop(redis_server)
    rows = [merged(rounds) for rounds in measured.values()]
    print(
        f"\n{cores()} cores, {loader}, {args.connections} connections, "
        f"{args.seconds:g} s per measurement, median of {args.rounds} round(s); manual clock, "
        "journal on\n"
    )
    print(
        "| store | workers | polls/s | submits/s | round trips per poll / submit "
        "| Redis calls per poll / submit | Redis CPU µs per poll / submit "
        "| emulator CPU µs per poll / submit | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['store']} | {row['workers']} | {_text(row['polls_per_s'], 0)} "
            f"| {_text(row['submits_per_s'], 0)} "
            f"| {_text(row['round_trips_per_poll'])} / {_text(row['round_trips_per_submit'])} "
            f"| {_text(row['redis_calls_per_poll'])} / {_text(row['redis_calls_per_submit'])} "
            f"| {_text(row['redis_cpu_us_per_poll'], 1)} / "
            f"{_text(row['redis_cpu_us_per_submit'], 1)} "
            f"| {_text(row['worker_cpu_us_per_poll'], 1)} / "
            f"{_text(row['worker_cpu_us_per_submit'], 1)} | {row['errors']} |"
        )
    if args.json:
        facts = {
            "cores": cores(),
            "connections": args.connections,
            "seconds": args.seconds,
            "rounds": args.rounds,
        }
        args.json.write_text(json.dumps(facts | {"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
