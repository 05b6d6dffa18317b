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


def _rps(results: dict[str, Any], server: str, workload: str, conns: int) -> float | None:
    try:
        return float(results["http"]["results"][server][workload][str(conns)]["rps"])
    except (KeyError, TypeError):
        return None


def _runs(results: dict[str, Any], server: str, workload: str, conns: int) -> list[float]:
    try:
        return list(results["http"]["results"][server][workload][str(conns)]["runs_rps"])
    except (KeyError, TypeError):
        return []


def _ratio(results: dict[str, Any], workload: str, conns: int, other: str) -> float | None:
    """Our req/s over ``other``'s: the median of the per-run ratios (run r of both servers
    ran back to back, under the same load from the rest of the machine), which drifting
    background load disturbs less than a ratio of medians."""
    ours = _runs(results, "emulator", workload, conns)
    theirs = _runs(results, other, workload, conns)
    pairs = [a / b for a, b in zip(ours, theirs, strict=False) if b]
    return statistics.median(pairs) if pairs else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 7 that this run measured: what, the figure, the bound, met."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, bound: float, higher: bool, unit: str) -> None:
        if value is None:
            return
        met = value >= bound if higher else value <= bound
        out.append(
            {
                "target": name,
                "value": round(value, 3),
                "bound": f"{'>=' if higher else '<='} {bound:g}{unit}",
                "unit": unit,
                "met": met,
            }
        )

    if "http" in results:
        for other, bound in (("prism", 4.0), ("wiremock", 1.0), ("ceiling", 0.7)):
            add(
                f"poll @16 vs {LABELS[other]}", _ratio(results, "poll", 16, other), bound, True, "x"
            )
        for other, bound in (("prism", 3.0), ("ceiling", 0.6)):
            name = f"submit @16 vs {LABELS[other]}"
            add(name, _ratio(results, "submit", 16, other), bound, True, "x")
    fixture = results.get("fixture")
    if fixture:
        add(
            "fixture life-cycle test, in-process (median)",
            fixture["in_process"]["median_test_ms"],
            2.0,
            False,
            " ms",
        )
        add("fixture start-up, in-process", fixture["in_process"]["startup_ms"], 100, False, " ms")
        add("fixture start-up, live", fixture["live"]["startup_ms"], 300, False, " ms")
    memory = results.get("memory")
    if memory:
        for key, label in (("bytes_per_task_tracemalloc", "tracemalloc"), ("rss", "RSS")):
            value = memory.get(key if key != "rss" else "bytes_per_task_rss")
            add(f"memory per stored finished task ({label})", value, 2048, False, " B")
    return out


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    quick = (
        " (quick run: one short run per cell, figures indicative only)" if results["quick"] else ""
    )
    machine = results.get("machine", {})
    lines.append(f"Benchmark run of {results['date']}{quick}; {results.get('seconds', '?')} s.")
    lines.append(
        f"Machine: {machine.get('cpus', '?')} CPUs shared with other work, Python "
        f"{machine.get('python', '?')}. Figures are medians; expect noise of ±15 %."
    )
    lines.append("")
    http = results.get("http")
    if http:
        lines.append(
            f"### HTTP (wrk, 1 thread; median of {http['runs']} run(s) of "
            f"{http['seconds_per_run']:g} s per cell, "
            f"{http.get('target_runs', http['runs'])} at 16 connections)"
        )
        lines.append("")
        lines.append(
            "Emulator: `python -m emulator serve` (uvicorn, uvloop + httptools, one worker, "
            "`--time-scale 0 --log-level warning`, journal on). Prism 5 mocking "
            f"`{http['contract']}`; WireMock 3 with stubs of the same routes (journal on, "
            "1000 entries); ceiling: `benchmarks/ceiling_app.py`. Mixed: of 10 requests, "
            "1 submit, 8 polls, 1 download of a 1024x1024 PNG (Prism: a poll instead, the "
            "contract has no download)."
        )
        lines.append("")
        lines.append(
            "| workload | conns | server | req/s | p50 ms | p99 ms | errors | emulator ÷ server* |"
        )
        lines.append("|---|---:|---|---:|---:|---:|---:|---:|")
        table = http["results"]
        for workload in ("submit", "poll", "mixed"):
            for conns in http["connections"]:
                for server in ORDER:
                    cell = table.get(server, {}).get(workload, {}).get(str(conns))
                    if cell is None:
                        continue
                    ratio = _ratio(results, workload, conns, server)
                    ratio_text = "" if server == "emulator" else f"{_fmt(ratio, 2)}x"
                    lines.append(
                        f"| {workload} | {conns} | {LABELS[server]} | {_fmt(cell['rps'], 0)} | "
                        f"{_fmt(cell['p50_ms'], 2)} | {_fmt(cell['p99_ms'], 2)} | "
                        f"{cell['errors']} | {ratio_text} |"
                    )
        lines.append("")
        lines.append(
            "\\* median of the per-run ratios (run r of both servers back to back); "
            "req/s, p50 and p99 are medians over the runs."
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
            f"(of the start-up, importing the plugin: {fixture['plugin_import_ms']:.0f} ms)"
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
        ("dashboard", "With the dashboard open"),
    ):
        part = results.get(key)
        if part:
            lines += [f"### {title} (benchmarks/{key}.py)", "", part.get("table") or "(no table)"]
            if part.get("error"):
                lines.append(f"\n{key}.py failed: {part['error'][-500:]}")
            lines.append("")
    checks = results.get("targets") or []
    if checks:
        lines.append("### Targets")
        lines.append("")
        lines.append("| target | measured | bound | met |")
        lines.append("|---|---:|---:|---|")
        for t in checks:
            unit = t["unit"]
            lines.append(
                f"| {t['target']} | {t['value']:g}{unit} | {t['bound']} | "
                f"{'yes' if t['met'] else '**no**'} |"
            )
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
        x = x_of(10**e)
        draw.line([x, top_margin - 5, x, height - 40], fill=(220, 220, 220))
        draw.text((x - 10, height - 35), f"{10**e:,}", fill="black")
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
