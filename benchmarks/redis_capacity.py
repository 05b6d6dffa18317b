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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from . import internals
from .scaling import (
    BODY,
    KEY,
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

MARK = "bench-mark:"
PREFIX = "capacity"
#: A write's deadline (ARGV[2] of every script, Redis TIME seconds) replayed later must not
#: have passed: arguments within this many seconds of the capture are deadlines.
DEADLINE_WINDOW = 60.0
_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}


def parse_monitor_line(line: str) -> tuple[str, list[bytes]] | None:
    """``+<time> [<db> <client>] "ARG" "ARG" ...`` -> (client, args); Redis quotes each
    argument as sdscatrepr does (backslash escapes and \\xHH)."""
    head = re.match(r"\+?[\d.]+ \[\d+ ([^\]]+)\] ", line)
    if head is None:
        return None
    args: list[bytes] = []
    i, text = head.end(), line
    while i < len(text):
        if text[i] != '"':
            i += 1
            continue
        i += 1
        out = bytearray()
        while text[i] != '"':
            if text[i] == "\\":
                nxt = text[i + 1]
                if nxt == "x":
                    out.append(int(text[i + 2 : i + 4], 16))
                    i += 4
                    continue
                out += _ESCAPES.get(nxt, nxt.encode())
                i += 2
                continue
            out += text[i].encode()
            i += 1
        args.append(bytes(out))
        i += 1
    return head.group(1), args


def script_names() -> dict[str, str]:
    """SHA-1 -> name of every Lua script of the Redis store (empty if the modules moved)."""
    try:
        modules = internals.redis_scripts()  # only to name what MONITOR shows
    except ImportError:
        return {}
    names = {}
    for module in modules:
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str) and "redis.call" in value:
                names[hashlib.sha1(value.encode()).hexdigest()] = name
    return names


@dataclass
class Call:
    """One command the emulator sent, and the commands Redis ran inside it (a script)."""

    args: list[bytes]
    inner: list[str] = field(default_factory=list)

    def name(self, names: dict[str, str]) -> str:
        command = self.args[0].decode().upper()
        if command != "EVALSHA":
            return command
        sha = self.args[1].decode()
        script = names.get(sha, f"script {sha[:8]}")
        # SNAPSHOT's mode (ARGV[5]: get, count, none) changes what it does.
        numkeys = int(self.args[2])
        argv = self.args[3 + numkeys :]
        if script == "SNAPSHOT" and len(argv) >= 5:
            return f"SNAPSHOT {argv[4].decode()}"
        return script

    def is_journal(self, names: dict[str, str]) -> bool:
        return self.name(names) == "JOURNAL" or (
            len(self.args) > 3 and self.args[2] == b"2" and self.args[3].endswith(b":journal")
        )


class Monitor:
    """A raw ``MONITOR`` connection, read after the fact (the kernel buffers what it sends)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        self.buffer = b""
        while b"\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        self.buffer = self.buffer.split(b"\r\n", 1)[1]  # "+OK"

    def lines_until(self, last_mark: str, seconds: float) -> list[str]:
        """Everything MONITOR saw, up to ``seconds`` after the mark ``last_mark`` appeared
        (the journal is written behind the answers, within milliseconds)."""
        deadline: float | None = None
        give_up = time.monotonic() + 30
        self.sock.settimeout(0.1)
        while time.monotonic() < give_up and (deadline is None or time.monotonic() < deadline):
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                chunk = b""
            self.buffer += chunk
            if deadline is None and f'"{MARK}{last_mark}"'.encode() in self.buffer:
                deadline = time.monotonic() + seconds
        self.sock.close()
        return [ln for ln in self.buffer.decode("utf-8", "replace").split("\r\n") if ln]


def segments(lines: list[str], names: dict[str, str]) -> tuple[dict[str, list[Call]], list[Call]]:
    """The emulator's calls per marked step, and its journal writes (which run behind)."""
    steps: dict[str, list[Call]] = {}
    journal: list[Call] = []
    current: list[Call] | None = None
    last: Call | None = None
    for line in lines:
        parsed = parse_monitor_line(line)
        if parsed is None:
            continue
        client, args = parsed
        if args and args[0].upper() == b"ECHO" and args[1].startswith(MARK.encode()):
            current = steps.setdefault(args[1].decode()[len(MARK) :], [])
            continue
        if client == "lua":
            if last is not None:
                last.inner.append(args[0].decode().upper())
            continue
        last = Call(args)
        if last.is_journal(names):
            journal.append(last)
        elif current is not None:
            current.append(last)
    return steps, journal


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


HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
WARM = "warm-up: submit, advance, poll (first use: scripts loaded, expiry sweep)"
STEPS = ("submit", "poll (running)", "advance clock", "poll (ended: settles)", "poll (settled)")
#: Not on a request's path: loading scripts (once per Redis) and the control plane's clock.
OFF_PATH = ("SCRIPT", "ADVANCE")
#: The journal's row: one call of the batch script (JOURNAL), replayed as captured, with the
#: entries that call carried (the store writes every entry queued meanwhile in one call).
JOURNAL_ROW = "JOURNAL (one batch call of {entries})"


def journal_entries(call: Call) -> int:
    """Entries one JOURNAL call carries: two arguments each (JSON, limit) after its keys."""
    numkeys = int(call.args[2])
    return (len(call.args) - 3 - numkeys) // 2


def journal_row(entries: int) -> str:
    return JOURNAL_ROW.format(entries=f"{entries} entr{'y' if entries == 1 else 'ies'}")


def capture(redis_port: int, base: str) -> tuple[dict[str, list[Call]], list[Call], str]:
    """Each step's commands, the journal's writes, and the id of the task submitted."""
    names = script_names()
    monitor = Monitor(redis_port)
    marker = socket.create_connection(("127.0.0.1", redis_port), timeout=5)

    def mark(label: str) -> None:
        data = f"{MARK}{label}".encode()
        marker.sendall(b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(data), data))
        marker.recv(1024)

    with httpx.Client(base_url=base, headers=HEADERS, timeout=10) as client:
        # The first cycle loads each script into Redis (NOSCRIPT, SCRIPT LOAD, again) and
        # runs the expiry sweep (every 256th submission): shown apart from the steady state.
        mark(WARM)
        warm_id = client.post("/v1/images/tasks", content=BODY).json()["data"]["task_id"]
        client.post("/_emulator/clock/advance", json={"seconds": 3600}).raise_for_status()
        client.get(f"/v1/images/tasks/{warm_id}").raise_for_status()
        mark(STEPS[0])
        task_id = client.post("/v1/images/tasks", content=BODY).json()["data"]["task_id"]
        mark(STEPS[1])
        client.get(f"/v1/images/tasks/{task_id}").raise_for_status()
        mark(STEPS[2])
        client.post("/_emulator/clock/advance", json={"seconds": 3600}).raise_for_status()
        for step in STEPS[3:]:
            mark(step)
            client.get(f"/v1/images/tasks/{task_id}").raise_for_status()
        mark("end")
    marker.close()
    steps, journal = segments(monitor.lines_until("end", 0.5), names)
    steps.pop("end", None)
    return steps, journal, task_id


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


def _busy_cost(steps: dict[str, list[Call]], rows: list[dict[str, Any]], step: str) -> float | None:
    """Redis CPU µs of one request of ``step`` while Redis is busy: its calls one per round
    trip (as redis-benchmark ran them without pipelining) plus its journal entry: the JOURNAL
    call's pipelined figure over the entries that call carried (entries are written in
    batches; a batch of one, as captured between sequential requests, is an upper bound)."""
    names = script_names()
    cpu = {row["command"]: row for row in rows}
    total = 0.0
    for call in steps.get(step, []):
        row = cpu.get(call.name(names))
        if row is None:
            return None
        total += row["p1"]["redis_cpu_us"]
    journal = next((row for row in rows if "journal_entries" in row), None)
    if journal is None:
        return None
    per_entry: float = journal["p16"]["redis_cpu_us"] / journal["journal_entries"]
    return total + per_entry


def on_paper(
    cost: dict[str, Any], steps: dict[str, list[Call]], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Where one Redis saturates, and how many workers and hosts it carries.

    Redis's CPU per request two ways: busy (each call's CPU while redis-benchmark kept 32
    connections going: a Redis serving many workers reads several requests per wake-up) and
    light (measured under one worker, where each request wakes Redis alone: an upper bound).
    A worker's rate on a core of its own is 1 s over its CPU per request."""
    paper: dict[str, Any] = {}
    for kind, step in (("poll", "poll (settled)"), ("submit", "submit")):
        busy = _busy_cost(steps, rows, step)
        light = cost[kind]["redis_cpu_us"]
        per_worker = 1e6 / cost[kind]["worker_cpu_us"]
        saturates = {"busy": None if not busy else 1e6 / busy, "light": 1e6 / light}
        workers = {k: None if v is None else v / per_worker for k, v in saturates.items()}
        # One worker per core, one core per host left to the OS and the proxy.
        best = workers["busy"] or workers["light"]
        paper[kind] = {
            "redis_cpu_us": {"busy": busy, "light": light},
            "redis_saturates_at_per_s": saturates,
            "one_worker_per_s": per_worker,
            "workers_per_redis": workers,
            "hosts": {str(c): None if best is None else best / (c - 1) for c in (4, 8, 16)},
        }
    return paper


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(data: dict[str, Any]) -> str:
    names = script_names()
    out = [f"{data['cores']} cores; redis-server {data['redis_version']}; loopback.", ""]
    out += ["What each request sends (MONITOR; inside: the commands Redis ran in the script):", ""]
    out += ["| step | round trips | calls | commands inside |", "|---|---:|---|---|"]
    steps: dict[str, list[Call]] = data["_steps"]
    for step, calls in steps.items():
        inside = "; ".join(" ".join(c.inner) or "-" for c in calls)
        labels = ", ".join(c.name(names) for c in calls)
        out.append(f"| {step} | {len(calls)} | {labels} | {inside} |")
    journal: list[Call] = data["_journal"]
    journal = [c for c in journal if c.inner]
    if journal:
        out.append(
            f"| journal (written behind; queued entries share one round trip) | - | "
            f"JOURNAL x {len(journal)} for {data['journal_entries']} entries | "
            f"{' '.join(journal[0].inner)} |"
        )
    out += [
        "",
        f"redis-benchmark, {data['clients']} connections, {data['requests']:,} calls each "
        "(submissions under fresh task ids; deadlines moved ahead):",
        "",
    ]
    out += [
        "| command | ops/s | p50 ms | p99 ms | Redis CPU µs | ops/s, 16 per pipeline "
        "| Redis CPU µs, pipelined |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["redis_benchmark"]:
        one, many = row["p1"], row["p16"]
        out.append(
            f"| {row['command']} | {_f(one['ops_per_s'])} | {one['p50_ms']:.3f} | "
            f"{one['p99_ms']:.3f} | {_f(one['redis_cpu_us'], 1)} | {_f(many['ops_per_s'])} | "
            f"{_f(many['redis_cpu_us'], 1)} |"
        )
    cost = data["cost"]
    out += [
        "",
        f"Under load (1 worker on this Redis, wrk 32 connections, {data['seconds']:g} s each):",
        "",
    ]
    out += [
        "| request | req/s | round trips | worker CPU µs | Redis CPU µs | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("poll", "submit"):
        c = cost[kind]
        out.append(
            f"| {kind} | {_f(c['requests_per_s'])} | {_f(c['round_trips'], 2)} | "
            f"{_f(c['worker_cpu_us'], 1)} | {_f(c['redis_cpu_us'], 1)} | {c['errors']} |"
        )
    out += ["", "On paper (saturated: Redis's one thread busy all the time; a worker per core):"]
    out += [
        "",
        "| request | Redis CPU µs busy / light | Redis saturates at /s | one worker /s "
        "| workers per Redis | hosts of 4 / 8 / 16 cores |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, p in data["paper"].items():
        us, at, workers = p["redis_cpu_us"], p["redis_saturates_at_per_s"], p["workers_per_redis"]
        hosts = " / ".join(_f(h, 1) for h in p["hosts"].values())
        out.append(
            f"| {kind} | {_f(us['busy'], 1)} / {_f(us['light'], 1)} | "
            f"{_f(at['busy'])} / {_f(at['light'])} | {_f(p['one_worker_per_s'])} | "
            f"{_f(workers['busy'], 1)} / {_f(workers['light'], 1)} | {hosts} |"
        )
    return "\n".join(out) + "\n"


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
