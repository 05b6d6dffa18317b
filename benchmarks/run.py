"""Run every benchmark in one go and write benchmarks/results/latest.{json,md,png}.

``python -m benchmarks`` (``make bench``): the full run, well under 15 minutes.
``python -m benchmarks --quick`` (``make bench-quick``): one short run of each, under 2 minutes.

HTTP: our emulator, Prism (mocking our contract), WireMock (stubs of the same routes) and the
bare Starlette ceiling are all started on 127.0.0.1, then measured round-robin (run 1 of every
server and workload, then run 2, ...) so that noise from other processes on the machine falls
on all of them alike; the figure of each cell is the median of its runs. Everything started
here is stopped by PID on the way out, also on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from . import fixture_timing, load, report, servers, tools

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
POLL_IDS = 64
DOWNLOAD_IDS = 8


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _prepare(server: servers.Server, workdir: Path) -> Path:
    """Task ids for wrk to poll (in a file) and each download fetched once.

    Ours and the ceiling get real tasks; the mocks answer any id alike, so they get
    valid-looking ids (and one submission each, to check the stub answers)."""
    real = server.name in ("emulator", "ceiling")
    ids = []
    for _ in range(POLL_IDS if real else 1):
        status, body = server.request("POST", "/v1/images/tasks", servers.SUBMIT_BODY)
        if status != 200:
            raise RuntimeError(f"{server.label}: submit answered {status}: {body[:300]!r}")
        ids.append(json.loads(body)["data"]["task_id"])
    if not real:
        ids = [f"task_{i:032x}" for i in range(POLL_IDS)]
    for task_id in ids[:2]:
        status, body = server.request("GET", f"/v1/images/tasks/{task_id}")
        if status != 200:
            raise RuntimeError(f"{server.label}: poll answered {status}: {body[:300]!r}")
    # Result URLs carry a token (SPEC D-14): the path of each task's first picture, from its poll.
    results = {}
    if "{result}" in server.download:
        for task_id in ids[:DOWNLOAD_IDS]:
            _, body = server.request("GET", f"/v1/images/tasks/{task_id}")
            results[task_id] = urlsplit(json.loads(body)["data"]["result_url"]).path
    if server.download:
        for task_id in ids[:DOWNLOAD_IDS]:
            download = server.download.replace("{id}", task_id)
            status, _ = server.request(
                "GET", download.replace("{result}", results.get(task_id, "")), auth=False
            )
            if status != 200:
                raise RuntimeError(f"{server.label}: download answered {status}")
    path = workdir / f"{server.name}.ids"
    path.write_text("".join(f"{i} {results.get(i, '')}".rstrip() + "\n" for i in ids))
    return path


def _reference_task(server: servers.Server) -> tuple[dict[str, Any], bytes]:
    """A finished task and its picture from our emulator: the bodies the stubs answer."""
    _, body = server.request("POST", "/v1/images/tasks", servers.SUBMIT_BODY)
    task_id = json.loads(body)["data"]["task_id"]
    _, body = server.request("GET", f"/v1/images/tasks/{task_id}")
    task: dict[str, Any] = json.loads(body)["data"]
    status, png = server.request("GET", urlsplit(task["result_url"]).path, auth=False)
    if status != 200:
        raise RuntimeError("the emulator did not serve its result picture")
    return task, png


def _warm_up(
    wrk: str, server: servers.Server, workload: str, args: argparse.Namespace, ids: Path
) -> None:
    """Run ``workload`` in short bursts until the rate is within 10 % of the best burst so far
    (or ``args.warmup_max`` seconds pass)."""
    best = 0.0
    spent = 0.0
    while spent < args.warmup_max:
        rps = load.run_wrk(wrk, server, workload, 16, args.warmup, ids, DOWNLOAD_IDS)["rps"]
        spent += args.warmup
        if best and rps <= best * 1.1:
            break
        best = max(best, rps)
    _log(f"warmed {server.label} {workload} for {spent:g} s")


def http_benchmarks(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    wrk = tools.wrk()
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    ours = servers.emulator(workdir)
    _log(f"starting {ours.label} on port {ours.port}")
    ours.start()
    task, png = _reference_task(ours)
    (workdir / "result.png").write_bytes(png)
    factories = {
        "prism": lambda: servers.prism(workdir),
        "wiremock": lambda: servers.wiremock(workdir, task, png),
        "ceiling": lambda: servers.ceiling(workdir, workdir / "result.png"),
    }
    launched: list[servers.Server] = []
    failed: dict[str, str] = {}
    for name in wanted:
        if name == "emulator":
            continue
        try:
            server = factories[name]()
            _log(f"starting {server.label} on port {server.port}")
            server.launch()
            launched.append(server)
        except (RuntimeError, tools.ToolMissing, OSError) as exc:
            failed[name] = str(exc)
            _log(f"{name} is left out: {exc}")
    started = [ours] if "emulator" in wanted else []
    for server in launched:  # they start side by side: the JVM and node take seconds
        try:
            server.wait_ready()
            started.append(server)
        except RuntimeError as exc:
            server.stop()
            failed[server.name] = str(exc)
            _log(f"{server.name} is left out: {exc}")
    if "emulator" not in wanted:
        ours.stop()
    ids = {s.name: _prepare(s, workdir) for s in started}
    conns = [int(c) for c in args.connections.split(",")]
    workloads = list(load.WORKLOADS)
    # Warm-up: JIT compilers (the JVM's takes 10-20 s here, V8's less) and caches. Every
    # server gets the same treatment: each workload until its rate stops climbing.
    for server in started:
        for workload in workloads:
            _warm_up(wrk, server, workload, args, ids[server.name])
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    total_runs = max(args.runs, args.target_runs if 16 in conns else 0)
    for r in range(total_runs):
        _log(f"HTTP run {r + 1} of {total_runs}")
        # All servers back to back for each cell: they share whatever else the machine does;
        # who goes first rotates from run to run.
        order = started[r % len(started) :] + started[: r % len(started)]
        for workload in workloads:
            for c in conns:
                if r >= args.runs and c != 16:
                    continue  # the targets' cells (16 connections) get extra runs
                for server in order:
                    result = load.run_wrk(
                        wrk, server, workload, c, args.duration, ids[server.name], DOWNLOAD_IDS
                    )
                    cell = runs.setdefault(server.name, {}).setdefault(workload, {})
                    cell.setdefault(str(c), []).append(result)
    rss = {s.name: s.rss_mib() for s in started}
    for server in started:
        server.stop()
    table: dict[str, Any] = {}
    for name, per_workload in runs.items():
        for workload, per_conn in per_workload.items():
            for c, results in per_conn.items():
                table.setdefault(name, {}).setdefault(workload, {})[c] = {
                    "rps": statistics.median(x["rps"] for x in results),
                    "p50_ms": statistics.median(x["p50_ms"] for x in results),
                    "p99_ms": statistics.median(x["p99_ms"] for x in results),
                    "errors": sum(x["errors"] for x in results),
                    "runs_rps": [round(x["rps"], 1) for x in results],
                }
    return {
        "servers": {s.name: s.label for s in started},
        "left_out": failed,
        "contract": str(servers.contract_path().relative_to(servers.ROOT)),
        "connections": conns,
        "runs": args.runs,
        "target_runs": max(args.runs, args.target_runs),
        "seconds_per_run": args.duration,
        "results": table,
        "rss_mib_after": rss,
    }


def _delegated(name: str, *flags: str) -> dict[str, Any]:
    """Run ``benchmarks/<name>.py`` in its own process; its printed table (and error)."""
    cmd = [fixture_timing._python(), "-m", f"benchmarks.{name}", *flags]
    _log(f"{name}: " + " ".join(cmd[1:]))
    proc = subprocess.run(
        cmd, cwd=servers.ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        _log(f"{name} benchmark failed ({proc.returncode}): {proc.stderr[-500:]}")
        return {"error": proc.stderr[-2000:], "table": proc.stdout}
    return {"table": proc.stdout.strip()}


def rendering_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/rendering.py (it also writes benchmarks/results/rendering.json)."""
    data = _delegated("rendering", *(["--quick"] if args.quick else []))
    json_path = RESULTS / "rendering.json"
    if "error" not in data and json_path.exists():
        data["results"] = json.loads(json_path.read_text())
    return data


def scaling_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/scaling.py: 1 worker in memory, 1 and 2 workers on Redis."""
    return _delegated("scaling", "--seconds", "1" if args.quick else "5")


def dashboard_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/dashboard.py: poll throughput with the dashboard open, against without."""
    return _delegated("dashboard", *(["--runs", "1", "--seconds", "2"] if args.quick else []))


def memory_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for flag in ([], ["--rss"]):
        out = subprocess.run(
            [
                fixture_timing._python(),
                "-m",
                "benchmarks.memory",
                "--tasks",
                str(args.tasks),
                *flag,
            ],
            cwd=servers.ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        result |= json.loads(out.stdout)
    return result


def fixture_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """Median over ``--fixture-sessions`` sessions of each fixture (one session in --quick)."""
    sessions = [fixture_timing.measure(args.fixture_tests) for _ in range(args.fixture_sessions)]
    merged: dict[str, Any] = {
        "plugin_import_ms": statistics.median(s["plugin_import_ms"] for s in sessions),
        "sessions": len(sessions),
        "tests_per_session": args.fixture_tests,
    }
    for kind in ("in_process", "live"):
        keys = sessions[0][kind].keys()
        merged[kind] = {k: statistics.median(s[kind][k] for s in sessions) for k in keys}
    return merged


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run of everything")
    parser.add_argument("--runs", type=int, help="HTTP runs per cell (default 3; quick 1)")
    parser.add_argument(
        "--target-runs", type=int, help="runs of the 16-connection cells (default 5; quick 1)"
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 2)")
    parser.add_argument("--warmup", type=float, help="seconds of one warm-up burst")
    parser.add_argument("--warmup-max", type=float, help="most warm-up seconds per workload")
    parser.add_argument("--connections", help="comma-separated (default 1,16,64; quick 16)")
    parser.add_argument("--servers", default="emulator,prism,wiremock,ceiling")
    parser.add_argument("--tasks", type=int, help="stored tasks for memory (default 100000)")
    parser.add_argument("--fixture-tests", type=int, help="tests per fixture session")
    parser.add_argument("--fixture-sessions", type=int, help="sessions per fixture")
    parser.add_argument(
        "--only",
        default="http,rendering,fixture,memory,scaling,dashboard",
        help="comma-separated subset of http,rendering,fixture,memory,scaling,dashboard",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "runs": 1 if quick else 3,
        "target_runs": 1 if quick else 5,
        "duration": 1.0 if quick else 2.0,
        "warmup": 1.0 if quick else 2.0,
        "warmup_max": 2.0 if quick else 15.0,
        "connections": "16" if quick else "1,16,64",
        "tasks": 20_000 if quick else 100_000,
        "fixture_tests": 30 if quick else 100,
        "fixture_sessions": 1 if quick else 3,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    only = {s.strip() for s in args.only.split(",")}
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    # Also when started in the background, where the shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    RESULTS.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "quick": args.quick,
        "machine": {
            "python": platform.python_version(),
            "cpus": len(__import__("os").sched_getaffinity(0)),
            "platform": platform.platform(),
        },
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            workdir = Path(tmp)
            if "http" in only:
                results["http"] = http_benchmarks(args, workdir)
            if "fixture" in only:
                _log("pytest fixtures")
                results["fixture"] = fixture_benchmarks(args)
            if "memory" in only:
                _log(f"memory of {args.tasks} stored tasks")
                results["memory"] = memory_benchmark(args)
            if "rendering" in only:
                results["rendering"] = rendering_benchmarks(args)
            if "scaling" in only:
                results["scaling"] = scaling_benchmarks(args)
            if "dashboard" in only:
                results["dashboard"] = dashboard_benchmarks(args)
    except KeyboardInterrupt:
        _log("interrupted: stopping every server started")
        return 130
    finally:
        servers.stop_all()
    results["seconds"] = round(time.monotonic() - began, 1)
    results["targets"] = report.targets(results)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = report.markdown(results)
    (RESULTS / "latest.md").write_text(markdown)
    chart = report.chart(results, RESULTS / "latest.png")
    print(markdown)
    _log(
        f"done in {results['seconds']} s: {RESULTS / 'latest.md'}" + (f", {chart}" if chart else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
