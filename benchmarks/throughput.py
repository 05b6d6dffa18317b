"""The HTTP part of ``make bench``: our emulator, Prism, WireMock and the ceiling, side by side.

Every server is started on 127.0.0.1 (its own free port), given real tasks (ours and the
ceiling) or valid-looking ids (the mocks), warmed up on each workload, then measured round-robin
(run 1 of every server and workload, then run 2, ...) so that noise from other processes on the
machine falls on all of them alike. Afterwards each journal is checked to have recorded the
load: a comparison "with the journal on" whose journal recorded nothing would lie.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.error
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import load, servers, tools

POLL_IDS = 64
#: The servers that hold real tasks (the others are mocks answering any id alike).
REAL = ("emulator", "ceiling")
DOWNLOAD_IDS = 8
#: After the first warm-up burst, further bursts of this many seconds while the rate climbs.
EXTRA_BURST = 2.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _prepare(server: servers.Server, workdir: Path) -> Path:
    """Task ids for wrk to poll (in a file), each polled once and its download fetched once.

    Ours and the ceiling get real tasks, submitted now: call this right before each cell that
    polls (see ``ids_for``). The mocks answer any id alike, so they get valid-looking ids (and
    one submission, to check the stub answers)."""
    real = server.name in REAL
    ids = []
    for _ in range(POLL_IDS if real else 1):
        status, body = server.request("POST", "/v1/images/tasks", servers.SUBMIT_BODY)
        if status != 200:
            raise RuntimeError(f"{server.label}: submit answered {status}: {body[:300]!r}")
        ids.append(json.loads(body)["data"]["task_id"])
    if not real:
        ids = [f"task_{i:032x}" for i in range(POLL_IDS)]
    # Every id polled once: it answers 200, and a first poll's extra work (ours settles the
    # task's charge) is done before the cell, as it is for every poll of a cell after its first.
    # Result URLs carry a token (SPEC D-14): the path of each task's first picture, from its poll.
    results: dict[str, str] = {}
    for task_id in ids if real else ids[:2]:
        status, body = server.request("GET", f"/v1/images/tasks/{task_id}")
        if status != 200:
            raise RuntimeError(f"{server.label}: poll answered {status}: {body[:300]!r}")
        if "{result}" in server.download and len(results) < DOWNLOAD_IDS:
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


def ids_for(server: servers.Server, workload: str, workdir: Path, mocks: dict[str, Path]) -> Path:
    """The ids one cell (a warm-up or a run) polls, prepared right before it.

    Workloads must not measure each other's aftermath: the submissions of earlier cells fill
    ours's store to ``max_tasks`` (100,000), which then evicts the oldest finished tasks, and
    ids prepared once at the start would answer 404 (cheaper than a poll) from then on. So ours
    and the ceiling get tasks submitted just now, the newest in the store; the mocks, whose
    answers depend on nothing sent before, keep the ids prepared once (``mocks``)."""
    if workload == "submit":  # submissions poll nothing
        path = workdir / "no.ids"
        path.write_text("")
        return path
    if server.name in REAL:
        return _prepare(server, workdir)
    if server.name not in mocks:
        mocks[server.name] = _prepare(server, workdir)
    return mocks[server.name]


def reference_task(server: servers.Server) -> tuple[dict[str, Any], bytes]:
    """A finished task and its picture from our emulator: the bodies the stubs answer."""
    _, body = server.request("POST", "/v1/images/tasks", servers.SUBMIT_BODY)
    task_id = json.loads(body)["data"]["task_id"]
    _, body = server.request("GET", f"/v1/images/tasks/{task_id}")
    task: dict[str, Any] = json.loads(body)["data"]
    status, png = server.request("GET", urlsplit(task["result_url"]).path, auth=False)
    if status != 200:
        raise RuntimeError("the emulator did not serve its result picture")
    return task, png


def warm_up(
    wrk: str, server: servers.Server, workload: str, args: argparse.Namespace, ids: Path
) -> dict[str, Any]:
    """One burst of ``args.warmup`` seconds (at least 5 outside --quick: WireMock's JIT needs
    it), then bursts of 2 s while the rate still climbs by more than 10 %, up to
    ``args.warmup_max`` seconds in all. Every server gets the same treatment. Errors are kept
    and logged: a warm-up on error answers warms the wrong code."""
    errors: dict[str, int] = {}

    def burst(seconds: float) -> float:
        run = load.run_wrk(wrk, server, workload, 16, seconds, ids, DOWNLOAD_IDS)
        for code, count in run["statuses"].items():
            errors[code] = errors.get(code, 0) + count
        rps: float = run["rps"]
        return rps

    rates = [burst(args.warmup)]
    spent = args.warmup
    while spent + EXTRA_BURST <= args.warmup_max:
        rps = burst(EXTRA_BURST)
        spent += EXTRA_BURST
        climbing = rps > max(rates) * 1.1
        rates.append(rps)
        if not climbing:
            break
    bursts = ", ".join(f"{r:,.0f}" for r in rates)
    failed = f"; errors {errors}" if errors else ""
    log(f"warmed {server.label} {workload} for {spent:g} s ({bursts} req/s){failed}")
    return {"seconds": spent, "bursts_rps": [round(r, 1) for r in rates], "errors": errors}


def journal_entries(server: servers.Server) -> int | None:
    """How many requests the server's journal holds now (None: it keeps none we can read).

    Ours: ``GET /_emulator/requests`` (at most journal_limit entries); WireMock:
    ``GET /__admin/requests`` (its ``meta.total``)."""
    path = {"emulator": "/_emulator/requests", "wiremock": "/__admin/requests?limit=1"}
    if server.name not in path:
        return None
    try:
        status, body = server.request("GET", path[server.name], auth=False)
    except (OSError, urllib.error.URLError):
        return 0
    if status != 200:
        return 0
    data = json.loads(body)
    if server.name == "wiremock":
        return int(data["meta"]["total"])
    return len(data["requests"])


def _summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for x in results:
        for code, count in x["statuses"].items():
            statuses[code] = statuses.get(code, 0) + count
    return {
        "rps": statistics.median(x["rps"] for x in results),
        "p50_ms": statistics.median(x["p50_ms"] for x in results),
        "p99_ms": statistics.median(x["p99_ms"] for x in results),
        # Any error makes the cell invalid (report.py): its rate is not that of real answers.
        "errors": sum(x["errors"] for x in results),
        "statuses": dict(sorted(statuses.items())),
        "runs_rps": [round(x["rps"], 1) for x in results],
        "cpu_us": _median_of(x.get("cpu_us") for x in results),
    }


def _median_of(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _start_all(
    wanted: list[str], workdir: Path, emulator_env: dict[str, str] | None = None
) -> tuple[list[servers.Server], dict[str, str]]:
    """Ours first (the stubs answer its bodies), then the others side by side (the JVM and
    node take seconds to start); a server that cannot start is left out, with the reason."""
    ours = servers.emulator(workdir)
    ours.env |= emulator_env or {}
    log(f"starting {ours.label} on port {ours.port}")
    ours.start()
    task, png = reference_task(ours)
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
            log(f"starting {server.label} on port {server.port}")
            server.launch()
            launched.append(server)
        except (RuntimeError, tools.ToolMissing, OSError) as exc:
            failed[name] = str(exc)
            log(f"{name} is left out: {exc}")
    started = [ours] if "emulator" in wanted else []
    for server in launched:
        try:
            server.wait_ready()
            started.append(server)
        except RuntimeError as exc:
            server.stop()
            failed[server.name] = str(exc)
            log(f"{server.name} is left out: {exc}")
    if "emulator" not in wanted:
        ours.stop()
    return started, failed


def http_benchmarks(
    args: argparse.Namespace, workdir: Path, emulator_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Every server and workload, warmed up, then measured round-robin. ``emulator_env``:
    EMULATOR_* settings of ours beyond the defaults (the harness's own tests shrink its store)."""
    wrk = tools.wrk()
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    started, failed = _start_all(wanted, workdir, emulator_env)
    mocks: dict[str, Path] = {}
    conns = [int(c) for c in args.connections.split(",")]
    workloads = list(load.WORKLOADS)
    warm: dict[str, dict[str, Any]] = {}
    for server in started:
        for workload in workloads:
            ids = ids_for(server, workload, workdir, mocks)
            warm.setdefault(server.name, {})[workload] = warm_up(wrk, server, workload, args, ids)
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    total_runs = max(args.runs, args.target_runs if 16 in conns else 0)
    for r in range(total_runs):
        log(f"HTTP run {r + 1} of {total_runs}")
        # All servers back to back for each cell: they share whatever else the machine does;
        # who goes first rotates from run to run.
        order = started[r % len(started) :] + started[: r % len(started)]
        for workload in workloads:
            for c in conns:
                if r >= args.runs and c != 16:
                    continue  # the targets' cells (16 connections) get extra runs
                for server in order:
                    ids = ids_for(server, workload, workdir, mocks)
                    result = load.run_wrk(
                        wrk, server, workload, c, args.duration, ids, DOWNLOAD_IDS
                    )
                    if result["errors"]:
                        log(f"{server.label} {workload} @{c}: errors {result['statuses']}")
                    cell = runs.setdefault(server.name, {}).setdefault(workload, {})
                    cell.setdefault(str(c), []).append(result)
    journals = {s.name: journal_entries(s) for s in started}
    rss = {s.name: s.rss_mib() for s in started}
    for server in started:
        server.stop()
    for name, entries in journals.items():
        if entries == 0:  # report.targets then calls the comparisons with it unknown, not met
            log(f"{name}'s request journal recorded nothing after the load: is it on?")
    table: dict[str, Any] = {}
    for name, per_workload in runs.items():
        for workload, per_conn in per_workload.items():
            for conn_key, results in per_conn.items():
                cell = _summarise(results)
                table.setdefault(name, {}).setdefault(workload, {})[conn_key] = cell
    return {
        "servers": {s.name: s.label for s in started},
        "left_out": failed,
        "contract": str(servers.contract_path().relative_to(servers.ROOT)),
        "connections": conns,
        "runs": args.runs,
        "target_runs": max(args.runs, args.target_runs),
        "seconds_per_run": args.duration,
        "warm_up": warm,
        "journal_entries_after": journals,
        "results": table,
        "rss_mib_after": rss,
    }
