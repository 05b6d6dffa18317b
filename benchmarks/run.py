"""Run every benchmark in one go and write benchmarks/results/latest.{json,md,png}.

``python -m benchmarks`` (``make bench``): the full run, about 19 minutes.
``python -m benchmarks --quick`` (``make bench-quick``): short warm-ups and runs of everything,
under 3 minutes; its figures are labelled as quick and indicative only.

HTTP (``throughput``): our emulator, Prism (mocking our contract), WireMock (stubs of the same
routes, journal on) and the bare Starlette ceiling, all on 127.0.0.1, each warmed up (at least
5 s per workload) and then measured round-robin in runs of 5 s; the figure of each cell is the
median of its runs, a ratio the median of the per-run ratios. The targets of the performance
issue are checked in the same run (``report.targets``: PASS / MISS). Everything started here is
stopped by PID on the way out, also on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
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

from . import fixture_timing, report, servers
from .throughput import http_benchmarks, log

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _delegated(name: str, *flags: str, json_out: Path | None = None) -> dict[str, Any]:
    """Run ``benchmarks/<name>.py`` in its own process; its printed table (and error), and
    the figures it wrote to ``json_out`` (``--json``) when asked for."""
    if json_out is not None:
        json_out.unlink(missing_ok=True)
        flags = (*flags, "--json", str(json_out))
    cmd = [fixture_timing._python(), "-m", f"benchmarks.{name}", *flags]
    log(f"{name}: " + " ".join(cmd[1:]))
    proc = subprocess.run(
        cmd, cwd=servers.ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        log(f"{name} benchmark failed ({proc.returncode}): {proc.stderr[-500:]}")
        return {"error": proc.stderr[-2000:], "table": proc.stdout}
    result: dict[str, Any] = {"table": proc.stdout.strip()}
    if json_out is not None:
        result["results"] = json.loads(json_out.read_text())
    return result


def rendering_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/rendering.py (it also writes benchmarks/results/rendering.json)."""
    data = _delegated("rendering", *(["--quick"] if args.quick else []))
    json_path = RESULTS / "rendering.json"
    if "error" not in data and json_path.exists():
        data["results"] = json.loads(json_path.read_text())
    return data


def scaling_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/scaling.py: 1 worker in memory, 1, 2 (and, on 4 cores, 4) workers on Redis."""
    seconds = "1" if args.quick else "5"
    rounds = "1" if args.quick else "3"
    return _delegated(
        "scaling", "--seconds", seconds, "--rounds", rounds, json_out=RESULTS / "scaling.json"
    )


def redis_capacity_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/redis_capacity.py: Redis's own cost of our commands; workers per Redis."""
    flags = ["--seconds", "1", "--requests", "10000"] if args.quick else []
    return _delegated("redis_capacity", *flags, json_out=RESULTS / "redis_capacity.json")


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


PARTS = ("http", "rendering", "fixture", "memory", "scaling", "redis", "dashboard")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run of everything")
    parser.add_argument("--runs", type=int, help="HTTP runs per cell (default 3; quick 1)")
    parser.add_argument(
        "--target-runs", type=int, help="runs of the 16-connection cells (default 5; quick 1)"
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 5; quick 2)")
    parser.add_argument(
        "--warmup", type=float, help="seconds of the first warm-up burst (default 5; quick 1)"
    )
    parser.add_argument(
        "--warmup-max", type=float, help="most warm-up seconds per workload (default 15; quick 1)"
    )
    parser.add_argument("--connections", help="comma-separated (default 1,16,64; quick 16)")
    parser.add_argument("--servers", default="emulator,prism,wiremock,ceiling")
    parser.add_argument("--tasks", type=int, help="stored tasks for memory (default 100000)")
    parser.add_argument("--fixture-tests", type=int, help="tests per fixture session")
    parser.add_argument("--fixture-sessions", type=int, help="sessions per fixture")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help="comma-separated subset of " + ",".join(PARTS),
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "runs": 1 if quick else 3,
        "target_runs": 1 if quick else 5,
        "duration": 2.0 if quick else 5.0,
        "warmup": 1.0 if quick else 5.0,
        "warmup_max": 1.0 if quick else 15.0,
        "connections": "16" if quick else "1,16,64",
        "tasks": 20_000 if quick else 100_000,
        "fixture_tests": 30 if quick else 100,
        "fixture_sessions": 1 if quick else 3,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    unknown = {s.strip() for s in args.only.split(",")} - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
    if not args.quick and args.warmup < 5:
        # The fair comparison needs WireMock's JIT warm; shorter is what --quick is for.
        parser.error("--warmup must be at least 5 seconds (use --quick for a short run)")
    return args


def cpu_speed(steps: int = 2_000_000, rounds: int = 5) -> float:
    """Seconds this interpreter takes for 10 million steps of a plain loop (the best of
    ``rounds``). The machine's speed changes from day to day (a loop at a module's top level,
    slower than this one, has taken 0.8 s on some days and 1.35 s on others): absolute figures
    such as the fixture's milliseconds are compared across runs only together with this one;
    ratios between servers of one run are not affected."""
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        total = 0
        for i in range(steps):
            total += i
        best = min(best, time.perf_counter() - began)
    return best * 10_000_000 / steps


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
            "cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            # Whatever else ran: the figures of a loaded machine are lower and noisier.
            "load_average_before": os.getloadavg(),
            "cpu_speed_before_s": round(cpu_speed(), 3),
        },
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            workdir = Path(tmp)
            if "http" in only:
                results["http"] = http_benchmarks(args, workdir)
            if "fixture" in only:
                log("pytest fixtures")
                results["fixture"] = fixture_benchmarks(args)
            if "memory" in only:
                log(f"memory of {args.tasks} stored tasks")
                results["memory"] = memory_benchmark(args)
            if "rendering" in only:
                results["rendering"] = rendering_benchmarks(args)
            if "scaling" in only:
                results["scaling"] = scaling_benchmarks(args)
            if "redis" in only:
                results["redis"] = redis_capacity_benchmarks(args)
            if "dashboard" in only:
                results["dashboard"] = dashboard_benchmarks(args)
    except KeyboardInterrupt:
        log("interrupted: stopping every server started")
        return 130
    finally:
        servers.stop_all()
    results["seconds"] = round(time.monotonic() - began, 1)
    results["machine"]["load_average_after"] = os.getloadavg()
    results["machine"]["cpu_speed_after_s"] = round(cpu_speed(), 3)
    results["targets"] = report.targets(results)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = report.markdown(results)
    (RESULTS / "latest.md").write_text(markdown)
    chart = report.chart(results, RESULTS / "latest.png")
    print(markdown)
    log(
        f"done in {results['seconds']} s: {RESULTS / 'latest.md'}" + (f", {chart}" if chart else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
