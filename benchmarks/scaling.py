"""Throughput of one emulator in memory, on Redis, and as two workers on Redis (issue 10).

    .venv/bin/python benchmarks/scaling.py [--seconds 5] [--connections 32]

Starts its own redis-server (a temp dir, no persistence, a free loopback port) and, per
configuration, ``python -m emulator serve`` on a free loopback port; drives polls and then
submissions with wrk (or, without wrk, an httpx client) for a bounded time; stops everything it
started by PID. Prints a Markdown table: requests per second, and Redis round trips per request
as the emulator counts them (``/_emulator/health`` -> ``store.round_trips``; with two workers
each health answer comes from one of them, so that column is left empty there) and the Redis
commands per request as Redis counts them (``INFO commandstats``; a script is one call plus
the commands it runs). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

KEY = "sk-bench-scaling"
BODY = '{"model":"NanoBanana","prompt":"a lighthouse at dusk"}'
CONFIGS = (("memory", 1), ("redis", 1), ("redis", 2))


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
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(done.group(1)), elapsed, int(errors.group(1)) if errors else 0


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
) -> Phase:
    trips = health_round_trips(base) if workers == 1 else None
    calls = redis_calls(redis_port) if redis_port else None
    if shutil.which("wrk"):
        requests, seconds, errors = run_wrk(
            target, wrk_lua(folder, method), args.connections, args.seconds
        )
    else:
        requests, seconds, errors = asyncio.run(
            httpx_load(target, method, args.connections, args.seconds)
        )
    after_trips = health_round_trips(base) if workers == 1 else None
    after_calls = redis_calls(redis_port) if redis_port else None
    return Phase(
        requests,
        seconds,
        errors,
        None if trips is None or after_trips is None else after_trips - trips - 1,
        None if calls is None or after_calls is None else after_calls - calls,
    )


def bench_one(
    store: str, workers: int, redis_port: int | None, args: argparse.Namespace, folder: Path
) -> tuple[Phase, Phase]:
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
        poll = measure(base, task_url, "GET", args, folder, redis_port, workers)
        submit = measure(base, f"{base}/v1/images/tasks", "POST", args, folder, redis_port, workers)
        return poll, submit
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    args = parser.parse_args()
    args.seconds = max(1.0, min(args.seconds, 60.0))  # bounded
    loader = "wrk -t1" if shutil.which("wrk") else "httpx"
    with tempfile.TemporaryDirectory(prefix="emulator-scaling-") as tmp:
        folder = Path(tmp)
        redis, redis_port = start_redis(folder)
        try:
            rows = []
            for store, workers in CONFIGS:
                print(f"measuring {store} x{workers} ...", file=sys.stderr, flush=True)
                port = redis_port if store == "redis" else None
                rows.append((store, workers, *bench_one(store, workers, port, args, folder)))
        finally:
            stop(redis)
    print(
        f"\n{os.cpu_count()} cores, {loader}, {args.connections} connections, "
        f"{args.seconds:g} s per measurement; manual clock, journal on\n"
    )
    print(
        "| store | workers | polls/s | submits/s | round trips per poll / submit "
        "| Redis calls per poll / submit | errors |"
    )
    print("|---|---|---|---|---|---|---|")

    def per(phase: Phase, value: int | None) -> str:
        return "-" if value is None else f"{value / phase.requests:.2f}"

    for store, workers, poll, submit in rows:
        print(
            f"| {store} | {workers} | {poll.rate:,.0f} | {submit.rate:,.0f} "
            f"| {per(poll, poll.round_trips)} / {per(submit, submit.round_trips)} "
            f"| {per(poll, poll.calls)} / {per(submit, submit.calls)} "
            f"| {poll.errors + submit.errors} |"
        )


if __name__ == "__main__":
    main()
