"""Targets, the Markdown table and the PNG chart of a benchmark run."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

ORDER = ("emulator", "prism", "wiremock", "ceiling")
LABELS = {
    "emulator": "emulator",
    "prism": "Prism",
    "wiremock": "WireMock",
    "ceiling": "Starlette ceiling",
}
COLOURS = {
    "emulator": (31, 119, 180),
    "prism": (214, 39, 40),
    "wiremock": (255, 127, 14),
    "ceiling": (127, 127, 127),
}


def _cell(results: dict[str, Any], server: str, workload: str, conns: int) -> dict[str, Any]:
    try:
        cell: dict[str, Any] = results["http"]["results"][server][workload][str(conns)]
    except (KeyError, TypeError):
        return {}
    return cell


def _rps(results: dict[str, Any], server: str, workload: str, conns: int) -> float | None:
    cell = _cell(results, server, workload, conns)
    return float(cell["rps"]) if cell else None


def _runs(results: dict[str, Any], server: str, workload: str, conns: int) -> list[float]:
    return list(_cell(results, server, workload, conns).get("runs_rps", []))


def error_text(statuses: dict[str, int]) -> str:
    """What the errors were: ``404: 65,170; socket read: 3``."""
    return "; ".join(f"{code}: {count:,}" for code, count in statuses.items())


def invalid(results: dict[str, Any], server: str, workload: str, conns: int) -> str:
    """Why the cell is no result ("" if it is one): every server here should answer 2xx to
    every request, so a cell with any error measured something else (a 404 is cheaper than
    a poll) and its rate is never compared."""
    cell = _cell(results, server, workload, conns)
    if not cell or not cell.get("errors"):
        return ""
    what = error_text(cell.get("statuses") or {}) or "of unknown kinds"
    return f"{server} {workload} @{conns} had {cell['errors']:,} errors ({what})"


def _ratio(results: dict[str, Any], workload: str, conns: int, other: str) -> float | None:
    """Our req/s over ``other``'s: the median of the per-run ratios (run r of both servers
    ran back to back, under the same load from the rest of the machine), which drifting
    background load disturbs less than a ratio of medians. None when either cell is invalid."""
    if invalid(results, "emulator", workload, conns) or invalid(results, other, workload, conns):
        return None
    ours = _runs(results, "emulator", workload, conns)
    theirs = _runs(results, other, workload, conns)
    pairs = [a / b for a, b in zip(ours, theirs, strict=False) if b]
    return statistics.median(pairs) if pairs else None


#: The performance issue's targets at 16 connections, after warm-up: (workload, server, bound).
HTTP_TARGETS = (
    ("submit", "wiremock", 1.0),
    ("submit", "ceiling", 0.6),
    ("submit", "prism", 4.0),
    ("poll", "wiremock", 1.2),
    ("poll", "ceiling", 0.7),
    ("poll", "prism", 4.0),
)


def _scaling_rows(results: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    try:
        rows = results["scaling"]["results"]["rows"]
    except (KeyError, TypeError):
        return {}
    return {(row["store"], int(row["workers"])): row for row in rows}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target this run measured: what, the figure, the bound, and PASS, MISS, or
    UNKNOWN where the run cannot tell (never a pass)."""
    out: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float | None,
        bound: float,
        higher: bool,
        unit: str,
        why_unknown: str = "",
        issue: str = "performance",
    ) -> None:
        if value is None and not why_unknown:
            return
        if value is None or why_unknown:
            status = "UNKNOWN"
        else:
            status = "PASS" if (value >= bound if higher else value <= bound) else "MISS"
        out.append(
            {
                "target": name,
                "value": None if value is None else round(value, 3),
                "bound": f"{'>=' if higher else '<='} {bound:g}{unit}",
                "unit": unit,
                "status": status,
                "met": status == "PASS",
                "note": why_unknown,
                "issue": issue,
            }
        )

    http = results.get("http")
    if http:
        journals = http.get("journal_entries_after", {})
        for workload, other, bound in HTTP_TARGETS:
            if other not in http["results"]:
                continue
            why = ""
            if other == "wiremock" and not journals.get("wiremock"):
                why = "WireMock's journal recorded nothing: the comparison is not the fair one"
            if not journals.get("emulator"):
                why = "our journal recorded nothing: not the configuration under test"
            broken = [invalid(results, s, workload, 16) for s in ("emulator", other)]
            if any(broken):
                why = "INVALID: " + "; ".join(b for b in broken if b)
            name = f"{workload} @16 ÷ {http['servers'].get(other, LABELS[other])}"
            add(name, _ratio(results, workload, 16, other), bound, True, "x", why)
    fixture = results.get("fixture")
    if fixture:
        add(
            "fixture submit → succeeded → download test, in-process (median)",
            fixture["in_process"]["median_test_ms"],
            2.0,
            False,
            " ms",
        )
    rows = _scaling_rows(results)
    memory_one, redis_one = rows.get(("memory", 1)), rows.get(("redis", 1))

    def scaling_errors(*compared: dict[str, Any]) -> str:
        bad = [
            f"{r['store']} x{r['workers']}: {r['errors']:,}" for r in compared if r.get("errors")
        ]
        return "INVALID: errors in " + ", ".join(bad) if bad else ""

    if memory_one and redis_one:
        ratio = redis_one["polls_per_s"] / memory_one["polls_per_s"]
        why = scaling_errors(memory_one, redis_one)
        add("polls, 1 worker on Redis ÷ 1 in memory", None if why else ratio, 0.5, True, "x", why)
    for fewer, more in ((1, 2), (2, 4)):
        a, b = rows.get(("redis", fewer)), rows.get(("redis", more))
        if a and b:
            name = f"polls, {more} workers on Redis ÷ {fewer} (adds throughput)"
            # "adds throughput": more than the noise of one run (5 %) above the fewer workers
            why = scaling_errors(a, b)
            ratio = b["polls_per_s"] / a["polls_per_s"]
            add(name, None if why else ratio, 1.05, True, "x", why)
    if rows and ("redis", 4) not in rows:
        cores = results["scaling"]["results"].get("cores")
        add(
            "polls, 4 workers on Redis ÷ 2",
            None,
            1.05,
            True,
            "x",
            f"not run: {cores} cores (docs/scaling.md works it out on paper)",
        )
    if fixture:
        startup = fixture["in_process"]["startup_ms"]
        add("fixture start-up, in-process", startup, 100, False, " ms", issue="earlier")
        add(
            "fixture start-up, live",
            fixture["live"]["startup_ms"],
            300,
            False,
            " ms",
            issue="earlier",
        )
    memory = results.get("memory")
    if memory:
        for key, label in (
            ("bytes_per_task_tracemalloc", "tracemalloc"),
            ("bytes_per_task_rss", "RSS"),
        ):
            add(
                f"memory per stored finished task ({label})",
                memory.get(key),
                2048,
                False,
                " B",
                issue="earlier",
            )
    return out


def _loads(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    machine = results.get("machine", {})
    if results["quick"]:
        lines += [
            "**QUICK RUN** (`make bench-quick`): 1 s warm-ups, one run of 2 s per cell, short "
            "parts. Figures indicative only; the targets are judged on `make bench`.",
            "",
        ]
    lines.append(f"Benchmark run of {results['date']}; {results.get('seconds', '?')} s.")
    before = machine.get("load_average_before")
    after = machine.get("load_average_after")
    load = ""
    if before and after:
        load = f" Load average (1, 5, 15 min) {_loads(before)} before, {_loads(after)} after."
    speeds = [machine.get(f"cpu_speed_{when}_s") for when in ("before", "after")]
    speed = ""
    if all(isinstance(v, int | float) for v in speeds):
        speed = (
            f" Speed: 10 million steps of a Python loop took {speeds[0]:.2f} s before and "
            f"{speeds[1]:.2f} s after (compare absolute figures, such as the fixture's ms, "
            "only between runs of a like speed)."
        )
    lines.append(
        f"Machine: {machine.get('cpus', '?')} CPUs shared with other work, Python "
        f"{machine.get('python', '?')}.{load}{speed} Figures are medians; expect noise of ±15 %."
    )
    lines.append("")
    http = results.get("http")
    if http:
        warm = http.get("warm_up", {})
        spent = [w["seconds"] for per in warm.values() for w in per.values()]
        warm_text = f"{min(spent):g}-{max(spent):g} s" if spent else "none"
        lines.append(
            f"### HTTP (wrk, 1 thread; median of {http['runs']} run(s) of "
            f"{http['seconds_per_run']:g} s per cell, "
            f"{http.get('target_runs', http['runs'])} at 16 connections)"
        )
        lines.append("")
        journals = http.get("journal_entries_after", {})
        lines.append(
            "Emulator: `python -m emulator serve` (uvicorn, uvloop + httptools, one worker, "
            "`--time-scale 0 --log-level warning`, journal on: "
            f"{journals.get('emulator', '?')} entries after the load). Prism mocking "
            f"`{http['contract']}`; WireMock with stubs of the same routes, its request journal "
            f"on (1000 entries at most; it held {journals.get('wiremock', '?')} requests after "
            "the load); ceiling: `benchmarks/ceiling_app.py`. Mixed: of 10 requests, "
            "1 submit, 8 polls, 1 download of a 1024x1024 PNG (Prism: a poll instead, the "
            f"contract has no download). Warm-up per server and workload: {warm_text} "
            "(16 connections, until the rate stopped climbing)."
        )
        lines.append("")
        lines.append(
            "| workload | conns | server | req/s | p50 ms | p99 ms | CPU µs/req† | errors "
            "| emulator ÷ server* |"
        )
        lines.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        table = http["results"]
        for workload in ("submit", "poll", "mixed"):
            for conns in http["connections"]:
                ours_invalid = bool(invalid(results, "emulator", workload, conns))
                for server in ORDER:
                    cell = table.get(server, {}).get(workload, {}).get(str(conns))
                    if cell is None:
                        continue
                    invalid_row = ours_invalid or bool(invalid(results, server, workload, conns))
                    ratio = _ratio(results, workload, conns, server)
                    ratio_text = "" if server == "emulator" else f"{_fmt(ratio, 2)}x"
                    if server != "emulator" and ratio is None:
                        ratio_text = "INVALID" if invalid_row else "-"
                    errors = f"{cell['errors']:,}"
                    if cell["errors"]:
                        errors = f"**INVALID**: {errors} ({error_text(cell.get('statuses') or {})})"
                    label = http["servers"].get(server, LABELS[server])
                    lines.append(
                        f"| {workload} | {conns} | {label} | {_fmt(cell['rps'], 0)} | "
                        f"{_fmt(cell['p50_ms'], 2)} | {_fmt(cell['p99_ms'], 2)} | "
                        f"{_fmt(cell.get('cpu_us'), 0)} | {errors} | {ratio_text} |"
                    )
        lines.append("")
        lines.append(
            "\\* median of the per-run ratios (run r of both servers back to back); "
            "req/s, p50 and p99 are medians over the runs. A cell with any error (an answer "
            "that is not 2xx, or a socket error) is INVALID: its rate is not that of the "
            "requests under test, so no ratio is computed with it and a target using it is "
            "UNKNOWN. † the server's CPU time (user + system, every process and thread of it) "
            "over the requests it answered in the run, median over the runs: the emulator and "
            "the ceiling serve from one Python thread, so their rate is bounded by one core; "
            "WireMock (JVM) and Prism (node) run several threads and may use both cores of a "
            "2-core machine, which they share with wrk."
        )
        for name, why in http.get("left_out", {}).items():
            lines.append(f"\n{name} was left out: {why}")
        lines.append("")
    fixture = results.get("fixture")
    if fixture:
        lines.append(
            f"### pytest fixtures (median of {fixture['sessions']} session(s) of "
            f"{fixture['tests_per_session']} tests each)"
        )
        lines.append("")
        lines.append(
            "A test (as in docs/pytest.md): submit (NanoBanana2-0.5K, a PNG), advance the "
            "clock, poll (succeeded), download the picture. Per test: setup + call + "
            "teardown, the first test excluded. Start-up: importing the plugin + the first "
            "test's setup."
        )
        lines.append("")
        lines.append("| fixture | test median ms | test p90 ms | call median ms | start-up ms |")
        lines.append("|---|---:|---:|---:|---:|")
        for kind, name in (("in_process", "image_emulator"), ("live", "image_emulator_live")):
            f = fixture[kind]
            lines.append(
                f"| `{name}` | {_fmt(f['median_test_ms'], 2)} | {_fmt(f['p90_test_ms'], 2)} | "
                f"{_fmt(f['median_call_ms'], 2)} | {_fmt(f['startup_ms'], 0)} |"
            )
        lines.append("")
        lines.append(
            f"(of the start-up, importing the plugin: {fixture['plugin_import_ms']:.0f} ms; "
            "bytecode cached, as after `pip install`)"
        )
        uncached = fixture["in_process"].get("startup_uncached_ms")
        if uncached is not None:
            lines.append("")
            lines.append(
                f"Without cached bytecode (this environment sets PYTHONDONTWRITEBYTECODE, so "
                f"every module is compiled at each start), the in-process start-up took "
                f"{uncached:.0f} ms."
            )
        lines.append("")
    memory = results.get("memory")
    if memory:
        lines.append("### Memory per stored task")
        lines.append("")
        lines.append(
            f"{memory['tasks']:,} finished tasks (submitted through `Emulator.submit`, polled "
            "once after the end, so their charges are settled) in a `MemoryStore`: "
            f"**{memory.get('bytes_per_task_tracemalloc', 0):,.0f} B** per task by tracemalloc, "
            f"**{memory.get('bytes_per_task_rss', 0):,.0f} B** by RSS growth."
        )
        lines.append("")
    for key, title in (
        ("rendering", "Rendering"),
        ("scaling", "Workers and Redis"),
        ("redis", "What one Redis carries"),
        ("dashboard", "With the dashboard open"),
    ):
        part = results.get(key)
        if part:
            module = "redis_capacity" if key == "redis" else key
            lines += [
                f"### {title} (benchmarks/{module}.py)",
                "",
                part.get("table") or "(no table)",
            ]
            if part.get("error"):
                lines.append(f"\n{key}.py failed: {part['error'][-500:]}")
            lines.append("")
    checks = results.get("targets") or []
    for issue, title in (
        ("performance", "Targets of the performance issue"),
        ("earlier", "Targets of the earlier benchmark issue (kept)"),
    ):
        rows = [t for t in checks if t["issue"] == issue]
        if not rows:
            continue
        lines += [f"### {title}", ""]
        if results["quick"]:
            lines += ["(quick run: indicative only)", ""]
        lines += ["| target | measured | bound | result |", "|---|---:|---:|---|"]
        for t in rows:
            value = "-" if t["value"] is None else f"{t['value']:g}{t['unit']}"
            status = t["status"] if t["status"] == "PASS" else f"**{t['status']}**"
            note = f" ({t['note']})" if t["note"] else ""
            lines.append(f"| {t['target']} | {value} | {t['bound']} | {status}{note} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """Requests per second of every server, per workload and concurrency (log scale)."""
    http = results.get("http")
    if not http:
        return None
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    groups = [(w, c) for w in ("submit", "poll", "mixed") for c in http["connections"]]
    present = [s for s in ORDER if s in http["results"]]
    values = [_rps(results, s, w, c) or 0.0 for (w, c) in groups for s in present]  # for the scale
    top = max([v for v in values if v > 0] or [1.0])
    lo_exp, hi_exp = 1, max(2, math.ceil(math.log10(top)))
    bar_h, gap = 14, 12
    left, right, top_margin = 120, 40, 60
    width = 900
    height = top_margin + len(groups) * (len(present) * bar_h + gap) + 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    plot_w = width - left - right

    def x_of(v: float) -> float:
        v = max(v, 10**lo_exp)
        return left + plot_w * (math.log10(v) - lo_exp) / (hi_exp - lo_exp)

    draw.text((left, 10), "requests per second (log scale), higher is better", fill="black")
    for i, server in enumerate(present):
        x = left + i * 170
        draw.rectangle([x, 30, x + 12, 42], fill=COLOURS[server])
        draw.text((x + 16, 30), LABELS[server], fill="black")
    for e in range(lo_exp, hi_exp + 1):
        gx = x_of(10**e)
        draw.line([gx, top_margin - 5, gx, height - 40], fill=(220, 220, 220))
        draw.text((gx - 10, height - 35), f"{10**e:,}", fill="black")
    y = top_margin
    for workload, conns in groups:
        draw.text((10, y + len(present) * bar_h / 2 - 6), f"{workload} c={conns}", fill="black")
        for server in present:
            value = _rps(results, server, workload, conns) or 0.0
            draw.rectangle([left, y, x_of(value), y + bar_h - 2], fill=COLOURS[server])
            draw.text((x_of(value) + 4, y), f"{value:,.0f}", fill="black")
            y += bar_h
        y += gap
    image.save(path)
    return path
