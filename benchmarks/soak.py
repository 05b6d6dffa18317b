"""Load without loss: many clients submit, poll and download for a while, under a fault plan.

Starts the emulator as its own process on a free loopback port (real clock, small time scale,
injected 429s, 503s, dropped connections, latency and failing tasks), drives it with
``--clients`` concurrent asyncio clients for ``--seconds``, then checks that every accepted task
reached a terminal state and is readable. Prints requests, error classes, p50/p99 per endpoint
and the server's RSS at start and end; writes ``benchmarks/results/soak.json``.

Exit status: 0 when nothing was lost, no unexpected 5xx appeared and RSS grew less than
``--rss-bound-mib``; 1 otherwise.

    python benchmarks/soak.py --seconds 120 --clients 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
INJECTED = "soak_injected"
#: Cheap models and sizes: the soak is about the life cycle, not the renderer.
PAYLOADS = [
    {"model": "NanoBanana2-0.5K", "prompt": "soak", "aspect_ratio": "1:1"},
    {"model": "NanoBanana2-0.5K", "prompt": "soak two", "n": 2, "output_format": "jpeg"},
    {"model": "NanoBanana", "prompt": "soak webp", "output_format": "webp", "aspect_ratio": "21:9"},
    {"model": "gpt-image-2", "prompt": "soak gpt", "size": "1024x768", "quality": "low"},
]
FAULTS = [
    {
        "id": "rate-limit",
        "match": {"endpoint": "submit"},
        "effect": {"kind": "http_error", "status": 429, "retry_after": 0},
        "probability": 0.05,
    },
    {
        "id": "fail-some",
        "match": {"endpoint": "submit"},
        "effect": {"kind": "fail_task", "code": "content_policy_violation", "at_progress": 40},
        "probability": 0.05,
    },
    {
        "id": "poll-503",
        "match": {"endpoint": "poll"},
        "effect": {"kind": "http_error", "status": 503, "code": INJECTED},
        "probability": 0.03,
    },
    {
        "id": "poll-drop",
        "match": {"endpoint": "poll"},
        "effect": {"kind": "drop"},
        "probability": 0.01,
    },
    {
        "id": "poll-slow",
        "match": {"endpoint": "poll"},
        "effect": {"kind": "latency", "seconds": 0.05},
        "probability": 0.05,
    },
]


@dataclass
class Tally:
    """What the clients saw."""

    requests: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)
    #: task id -> the key that owns it (tasks are invisible to other keys).
    accepted: dict[str, str] = field(default_factory=dict)
    finished: dict[str, str] = field(default_factory=dict)
    images: int = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _call(
    client: httpx.AsyncClient, tally: Tally, endpoint: str, method: str, url: str, **kw: Any
) -> httpx.Response | None:
    """One request; classifies the answer. None for a dropped connection."""
    started = time.perf_counter()
    tally.requests[endpoint] += 1
    try:
        response = await client.request(method, url, **kw)
    except httpx.TransportError as exc:
        tally.outcomes[f"{endpoint} {type(exc).__name__}"] += 1
        return None
    tally.latencies[endpoint].append(time.perf_counter() - started)
    status = response.status_code
    tally.outcomes[f"{endpoint} {status}"] += 1
    if status >= 500:
        injected = False
        with contextlib.suppress(ValueError):
            injected = response.json().get("code") == INJECTED
        if not injected:
            tally.unexpected.append(f"{method} {url} -> {status} {response.text[:200]}")
    return response


async def _follow(client: httpx.AsyncClient, tally: Tally, task_id: str, deadline: float) -> None:
    """Poll until terminal (or the deadline), then download every result."""
    while time.monotonic() < deadline:
        response = await _call(client, tally, "poll", "GET", f"/v1/images/tasks/{task_id}")
        if response is not None and response.status_code == 200:
            data = response.json()["data"]
            if data["status"] in ("succeeded", "failed"):
                tally.finished[task_id] = data["status"]
                urls = data["metadata"].get("result_urls") or (
                    [data["result_url"]] if data["result_url"] else []
                )
                for url in urls:
                    image = await _call(client, tally, "download", "GET", url)
                    if image is None or image.status_code != 200:
                        tally.unexpected.append(f"result {url} unreadable")
                    else:
                        tally.images += 1
                return
        await asyncio.sleep(0.05)  # a client's poll interval, not a test's timing


async def _client(
    base_url: str, key: str, tally: Tally, until: float, max_tasks: int, n: int
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        i = n
        while time.monotonic() < until and len(tally.accepted) < max_tasks:
            payload = PAYLOADS[i % len(PAYLOADS)]
            i += 1
            response = await _call(
                client, tally, "submit", "POST", "/v1/images/tasks", json=payload
            )
            if response is None or response.status_code != 200:
                if response is not None and response.status_code not in (429,):
                    tally.unexpected.append(f"submit -> {response.status_code} {response.text}")
                continue
            task_id = response.json()["data"]["task_id"]
            tally.accepted[task_id] = key
            await _follow(client, tally, task_id, time.monotonic() + 60)


async def _verify(base_url: str, key: str, tally: Tally) -> list[str]:
    """Every task ``key`` had accepted, read once more: terminal and readable, or lost."""
    lost: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        for task_id in sorted(t for t, owner in tally.accepted.items() if owner == key):
            if task_id not in tally.finished:
                await _follow(client, tally, task_id, time.monotonic() + 30)
            response = None
            for _ in range(20):  # injected poll faults still apply; retry through them
                response = await _call(
                    client, Tally(), "verify", "GET", f"/v1/images/tasks/{task_id}"
                )
                if response is not None and response.status_code in (200, 404):
                    break
            ok = (
                response is not None
                and response.status_code == 200
                and response.json()["data"]["status"] in ("succeeded", "failed")
            )
            if not ok:
                answer = "no answer" if response is None else response.text[:120]
                lost.append(f"{task_id}: {answer}")
    return lost


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def start_server(port: int, fault_file: Path, time_scale: float) -> subprocess.Popen[bytes]:
    """The emulator as its own process, the way a user runs it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--seed",
            "7",
            "--time-scale",
            str(time_scale),
            "--failure-rate",
            "0.05",
            "--fault-file",
            str(fault_file),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        # A small render cache: growth beyond it would be a leak, not the cache filling up.
        env={**os.environ, "EMULATOR_RENDER_CACHE_BYTES": str(16 * 1024 * 1024)},
    )


async def _wait_until_up(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as probe:
        for _ in range(200):
            try:
                if (await probe.get("/_emulator/health")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise SystemExit("the emulator did not start")


async def soak(args: argparse.Namespace, base_url: str, pid: int) -> dict[str, Any]:
    """Drive the server at ``base_url`` (process ``pid``) and report what happened."""
    await _wait_until_up(base_url)
    # Warm up (imports, fonts, first renders) before the RSS baseline.
    # At full concurrency: the server's thread pool and allocator grow to their working size
    # here, so what the bound measures afterwards is growth with work done, i.e. leaks.
    warm = time.monotonic() + args.warm_up
    await asyncio.gather(
        *(_client(base_url, "sk-warm", Tally(), warm, 10**6, i) for i in range(args.clients))
    )
    rss_start = _rss_mib(pid)
    tally = Tally()
    started = time.monotonic()
    until = started + args.seconds
    keys = [f"sk-soak-{i % 4}" for i in range(args.clients)]
    samples: list[tuple[float, float]] = []

    async def sample_rss() -> None:
        while time.monotonic() < until:
            samples.append((round(time.monotonic() - started), round(_rss_mib(pid), 1)))
            await asyncio.sleep(10)

    await asyncio.gather(
        sample_rss(),
        *(_client(base_url, keys[i], tally, until, args.max_tasks, i) for i in range(args.clients)),
    )
    elapsed = time.monotonic() - started
    lost: list[str] = []
    for key in sorted(set(keys)):
        lost += await _verify(base_url, key, tally)
    rss_end = _rss_mib(pid)
    total = sum(tally.requests.values())
    return {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "requests": total,
        "requests_per_second": round(total / elapsed, 1),
        "by_endpoint": dict(tally.requests),
        "outcomes": dict(sorted(tally.outcomes.items())),
        "latency_ms": {
            endpoint: {
                "p50": round(_percentile(values, 50), 2),
                "p99": round(_percentile(values, 99), 2),
            }
            for endpoint, values in sorted(tally.latencies.items())
        },
        "tasks_accepted": len(tally.accepted),
        "tasks_finished": dict(Counter(tally.finished.values())),
        "images_downloaded": tally.images,
        "lost": lost,
        "unexpected": tally.unexpected[:20],
        "unexpected_count": len(tally.unexpected),
        "rss_mib": {"start": round(rss_start, 1), "end": round(rss_end, 1)},
        "rss_mib_every_10s": [mib for _, mib in samples],
        "rss_bound_mib": args.rss_bound_mib,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-tasks", type=int, default=50_000)
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--rss-bound-mib", type=float, default=50.0)
    parser.add_argument("--warm-up", type=float, default=30.0, help="seconds before the baseline")
    args = parser.parse_args(argv)
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        fault_file = Path(tmp) / "faults.json"
        fault_file.write_text(json.dumps(FAULTS))
        server = start_server(port, fault_file, args.time_scale)
        try:
            report = asyncio.run(soak(args, f"http://127.0.0.1:{port}", server.pid))
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2, default=dict))
    print(json.dumps(report, indent=2, default=dict))
    growth = report["rss_mib"]["end"] - report["rss_mib"]["start"]
    problems = []
    if report["lost"]:
        problems.append(f"{len(report['lost'])} accepted tasks lost")
    if report["unexpected_count"]:
        problems.append(f"{report['unexpected_count']} unexpected answers")
    if growth > args.rss_bound_mib:
        problems.append(f"RSS grew {growth:.0f} MiB, more than {args.rss_bound_mib:.0f} MiB")
    print("soak: " + ("; ".join(problems) if problems else "nothing lost, no unexpected 5xx"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
