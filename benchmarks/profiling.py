"""Where a poll's and a submission's CPU time goes: ours against the ceiling's (``make profile``).

    .venv/bin/python -m benchmarks.profiling [--seconds 10] [--warmup 5] [--rate 250]

For the emulator (``python -m emulator serve``, as ``make bench`` runs it) and the bare
Starlette ceiling (``benchmarks/ceiling_app.py``), each on a free loopback port: a warm-up, then
per workload (polls, then submissions; wrk, 1 thread, 16 connections):

1. a run without the profiler: requests per second and the server's CPU microseconds per
   request (user + system time of the process, from /proc, over the requests wrk counted);
2. a run under ``py-spy record --format raw`` (collapsed stacks, kept in
   benchmarks/results/), read here: the share of the samples in each frame, times the CPU per
   request of 1, gives microseconds per request;
3. a run under ``py-spy record --format flamegraph``: docs/profile-<server>-<workload>.svg.

py-spy samples only while the process runs (idle waits in the event loop are left out), so a
frame's share of the samples is its share of the CPU time. Writes
benchmarks/results/profile.{json,md} and prints the tables; stops everything it started by PID.
py-spy comes with the dev dependencies (PyPI ``py-spy``); attaching to a process needs root or
``ptrace`` permission.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import load, servers, tools
from .throughput import DOWNLOAD_IDS, ids_for, log, reference_task

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs"
CONNECTIONS = 16
WORKLOADS = ("poll", "submit")
#: Groups of a sample's innermost frame, by the file it runs in (first match wins). Data.
GROUPS = (
    ("uvicorn + httptools: HTTP parsing, protocol", ("uvicorn/", "httptools/")),
    ("event loop: asyncio, uvloop", ("asyncio/", "uvloop/")),
    ("starlette", ("starlette/",)),
    ("ceiling app", ("benchmarks/ceiling_app.py",)),
    ("json (stdlib)", ("json/",)),
    ("random (stdlib)", ("random.py",)),
    ("dataclasses: generated __init__, replace", ("dataclasses.py", "<string>")),
    ("urllib, base64 (stdlib)", ("urllib/", "base64.py")),
)
#: Innermost frames of a thread that is blocked, not running: py-spy reports a thread waiting
#: on a lock (anyio's idle worker threads in ``Queue.get``) as active; they use no CPU.
IDLE_LEAVES = ("Condition.wait (threading.py", "Event.wait (threading.py")
#: The entry point's frames, under every sample of the server: not worth a row.
ENTRY_FILES = ("emulator/cli.py", "emulator/__main__.py")
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise tools.ToolMissing("py-spy is not installed: `make setup` (dev dependencies)")
    return found


def group_of(file: str) -> str:
    """The group of a frame's file: a listed one, ``emulator/<module>``, or the rest."""
    for name, markers in GROUPS:
        if any(marker in file for marker in markers):
            return name
    match = re.search(r"(?:^|/)emulator/(.+)$", file)
    if match:
        return f"emulator: {match.group(1)}"
    return "other (stdlib and libraries)"


def parse_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw format: one ``frame;frame;...;frame count`` line per distinct stack."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def _split(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame)
    return (match.group("function"), match.group("file")) if match else (frame, "?")


def breakdown(stacks: Counter[tuple[str, ...]], us_per_request: float) -> dict[str, Any]:
    """Microseconds per request: by group of the innermost frame (self time), and the
    inclusive time of the frames of the emulator, the ceiling and Starlette that weigh most."""
    idle = sum(c for stack, c in stacks.items() if stack[-1].startswith(IDLE_LEAVES))
    total = sum(stacks.values()) - idle
    if not total:
        return {"samples": 0, "idle_samples": idle, "self": {}, "inclusive": {}}
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        if stack[-1].startswith(IDLE_LEAVES):
            continue
        function, file = _split(stack[-1])
        own[group_of(file)] += count
        seen = set()
        for frame in stack:
            function, file = _split(frame)
            keep = group_of(file).startswith(("emulator", "ceiling", "starlette"))
            if keep and not file.endswith(ENTRY_FILES):
                seen.add(f"{function} ({file})")
        for name in seen:
            inclusive[name] += count
    scale = us_per_request / total
    return {
        "samples": total,
        "idle_samples": idle,
        "self": {name: count * scale for name, count in own.most_common()},
        "inclusive": {name: count * scale for name, count in inclusive.most_common(25)},
    }


def _checked(run: dict[str, Any]) -> dict[str, Any]:
    """``run``, if every answer was 2xx: a profile of error answers profiles the wrong code."""
    if run["errors"]:
        raise RuntimeError(f"wrk saw errors ({run['statuses']}): no profile of error answers")
    return run


def _record(
    spy: str, pid: int, fmt: str, out: Path, seconds: float, rate: int
) -> subprocess.Popen[bytes]:
    cmd = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--duration", f"{seconds:g}"]
    # Blocking (py-spy's default): the process is paused for each sample, so every stack is
    # whole; at 250 samples/s that costs the server about 1 % of its time.
    cmd += ["--format", fmt, "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _under_py_spy(
    wrk: str, server: servers.Server, workload: str, ids: Path, fmt: str, out: Path, args: Any
) -> None:
    assert server.proc is not None
    spy = _record(py_spy(), server.proc.pid, fmt, out, args.seconds, args.rate)
    try:
        time.sleep(0.5)  # py-spy attaches before the load starts (not a test: a tool's pace)
        _checked(load.run_wrk(wrk, server, workload, CONNECTIONS, args.seconds, ids, DOWNLOAD_IDS))
        _, err = spy.communicate(timeout=args.seconds + 60)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait(5)
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {err.decode()[-500:]}")


def profile_server(
    server: servers.Server, workdir: Path, args: Any, wrk: str
) -> dict[str, dict[str, Any]]:
    mocks: dict[str, Path] = {}
    for workload in WORKLOADS:  # warm-up
        ids = ids_for(server, workload, workdir, mocks)
        _checked(load.run_wrk(wrk, server, workload, CONNECTIONS, args.warmup, ids, DOWNLOAD_IDS))
    found: dict[str, dict[str, Any]] = {}
    for workload in WORKLOADS:
        # Fresh ids before each run (throughput.ids_for): no run polls tasks evicted since.
        ids = ids_for(server, workload, workdir, mocks)
        cpu = server.cpu_seconds()
        run = load.run_wrk(wrk, server, workload, CONNECTIONS, args.seconds, ids, DOWNLOAD_IDS)
        us = (server.cpu_seconds() - cpu) / run["requests"] * 1e6
        _checked(run)
        log(f"{server.label} {workload}: {run['rps']:,.0f} req/s, {us:.1f} µs CPU per request")
        raw = RESULTS / f"profile-{server.name}-{workload}.txt"
        _under_py_spy(
            wrk, server, workload, ids_for(server, workload, workdir, mocks), "raw", raw, args
        )
        svg = DOCS / f"profile-{server.name}-{workload}.svg"
        ids = ids_for(server, workload, workdir, mocks)
        _under_py_spy(wrk, server, workload, ids, "flamegraph", svg, args)
        found[workload] = {
            "rps": run["rps"],
            "errors": run["errors"],
            "cpu_us_per_request": us,
            "flamegraph": str(svg.relative_to(HERE.parent)),
            "collapsed": str(raw.relative_to(HERE.parent)),
            **breakdown(parse_collapsed(raw.read_text()), us),
        }
    return found


def markdown(data: dict[str, Any]) -> str:
    out = [
        f"Profile of {data['date']} (py-spy {data['py_spy']}, {data['rate']} samples/s, "
        f"{data['seconds']:g} s per run, wrk 1 thread, {CONNECTIONS} connections; load "
        f"average {data['load_average']}).",
        "",
    ]
    for workload in WORKLOADS:
        rows = {name: per[workload] for name, per in data["servers"].items()}
        out += [f"### {workload}", ""]
        out.append("| | " + " | ".join(rows) + " |")
        out.append("|---|" + "---:|" * len(rows))
        out.append("| req/s | " + " | ".join(f"{r['rps']:,.0f}" for r in rows.values()) + " |")
        cpu = " | ".join(f"{r['cpu_us_per_request']:.1f}" for r in rows.values())
        out.append(f"| CPU µs per request | {cpu} |")
        groups: list[str] = []
        for r in rows.values():
            groups += [g for g in r["self"] if g not in groups]
        for group in groups:
            cells = " | ".join(f"{r['self'].get(group, 0.0):.1f}" for r in rows.values())
            out.append(f"| {group} (self) | {cells} |")
        out.append("")
        for name, r in rows.items():
            out += [f"Inclusive µs per request, {name} {workload} ({r['samples']} samples):", ""]
            out += ["| frame | µs |", "|---|---:|"]
            out += [f"| `{frame}` | {us:.1f} |" for frame, us in list(r["inclusive"].items())[:20]]
            out.append("")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds per workload")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    args.seconds = max(2.0, min(args.seconds, 60.0))
    wrk = tools.wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    version = subprocess.run([py_spy(), "--version"], capture_output=True, text=True, check=True)
    data: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "py_spy": version.stdout.split()[-1],
        "rate": args.rate,
        "seconds": args.seconds,
        "load_average": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
        "servers": {},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
            workdir = Path(tmp)
            ours = servers.emulator(workdir)
            ours.start()
            _, png = reference_task(ours)
            (workdir / "result.png").write_bytes(png)
            data["servers"]["emulator"] = profile_server(ours, workdir, args, wrk)
            ours.stop()
            ceiling = servers.ceiling(workdir, workdir / "result.png")
            ceiling.start()
            data["servers"]["ceiling"] = profile_server(ceiling, workdir, args, wrk)
            ceiling.stop()
    finally:
        servers.stop_all()
    (RESULTS / "profile.json").write_text(json.dumps(data, indent=1) + "\n")
    text = markdown(data)
    (RESULTS / "profile.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
