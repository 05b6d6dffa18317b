"""What one Redis carries, on paper (benchmarks/redis_capacity.py's step 4), and the report of
every step as markdown."""

from __future__ import annotations

from typing import Any

from .redis_monitor import Call, script_names


def busy_cost(steps: dict[str, list[Call]], rows: list[dict[str, Any]], step: str) -> float | None:
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
        busy = busy_cost(steps, rows, step)
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
