"""Poll throughput with the dashboard open and updating, against without it.

    .venv/bin/python -m benchmarks.dashboard [--seconds 3] [--runs 3] [--tasks 2000]

Starts the emulator as the HTTP benchmark does (``python -m emulator serve``: uvicorn, uvloop +
httptools, one worker, journal on) on a free loopback port and submits ``--tasks`` tasks. Then,
``--runs`` times, wrk polls 64 of them with 16 connections for ``--seconds``: once with no
browser, once with Debian's chromium showing ``/_emulator/ui`` (the task table, refreshing
itself once a second; headless, started before the runs and kept open, as a developer keeps
it). Prints a Markdown table: each run's req/s, the medians, their ratio, and how many
requests the open page sent per second while wrk ran. Loopback only; stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from tests.ui_browser import launch

from . import load, servers, tools

CONNECTIONS = 16
POLL_IDS = 64
_LIVE_REQUESTS = (
    "performance.getEntriesByType('resource').filter(e => e.name.includes('/live/')).length"
)


def _fill(server: servers.Server, tasks: int, ids_file: Path) -> None:
    ids = []
    for _ in range(tasks):
        status, body = server.request("POST", "/v1/images/tasks", servers.SUBMIT_BODY)
        if status != 200:
            raise RuntimeError(f"submit answered {status}: {body[:300]!r}")
        ids.append(json.loads(body)["data"]["task_id"])
    ids_file.write_text("".join(f"{i}\n" for i in ids[-POLL_IDS:]))


def _poll(wrk: str, server: servers.Server, seconds: float, ids_file: Path) -> float:
    result = load.run_wrk(wrk, server, "poll", CONNECTIONS, seconds, ids_file, 0)
    if result["errors"]:
        raise RuntimeError(f"wrk saw errors: {result['statuses']}")
    rps: float = result["rps"]
    return rps


def _chromium_cpu() -> float:
    """CPU seconds used so far by this process's chromium processes (Linux /proc)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 2 :].split()
        if name.startswith("chrom") and int(fields[1]) in _ours():
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _ours() -> set[int]:
    """This process and its descendants."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(text[text.rfind(")") + 2 :].split()[1])
    ours = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in ours and pid not in ours:
                ours.add(pid)
                grew = True
    return ours


def _open_dashboard(page: Page, base: str) -> None:
    """The task table, once its first refresh has come back (the page is then live)."""
    with page.expect_response(lambda r: "/_emulator/ui/live/tasks" in r.url, timeout=30_000):
        page.goto(base + "/_emulator/ui")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="pairs of runs (without, with)")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks stored before the runs")
    args = parser.parse_args(argv)
    wrk = tools.wrk()
    without: list[float] = []
    with_page: list[float] = []
    page_rates: list[float] = []
    chromium_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        workdir = Path(tmp)
        server = servers.emulator(workdir)
        server.start()
        try:
            ids_file = workdir / "ids"
            _fill(server, args.tasks, ids_file)
            _poll(wrk, server, args.seconds, ids_file)  # warm-up
            with sync_playwright() as playwright:
                browser = launch(playwright)
                try:
                    page = browser.new_page(viewport={"width": 1366, "height": 860})
                    for _ in range(args.runs):
                        page.goto("about:blank")
                        without.append(_poll(wrk, server, args.seconds, ids_file))
                        _open_dashboard(page, server.base)
                        before = int(page.evaluate(_LIVE_REQUESTS))
                        cpu = _chromium_cpu()
                        with_page.append(_poll(wrk, server, args.seconds, ids_file))
                        chromium_cpu.append((_chromium_cpu() - cpu) / args.seconds)
                        after = int(page.evaluate(_LIVE_REQUESTS))
                        page_rates.append((after - before) / args.seconds)
                finally:
                    browser.close()
        finally:
            server.stop()
    ratio = statistics.median(with_page) / statistics.median(without)
    print(
        f"| poll req/s, {CONNECTIONS} connections, {args.tasks} tasks stored | without | "
        "with the dashboard open | page requests/s | chromium CPU (cores) |"
    )
    print("|---|---:|---:|---:|---:|")
    rows = zip(without, with_page, page_rates, chromium_cpu, strict=True)
    for i, (a, b, r, c) in enumerate(rows, 1):
        print(f"| run {i} | {a:,.0f} | {b:,.0f} | {r:.2f} | {c:.3f} |")
    print(
        f"| median | {statistics.median(without):,.0f} | {statistics.median(with_page):,.0f} | "
        f"{statistics.median(page_rates):.2f} | {statistics.median(chromium_cpu):.3f} |"
    )
    print(f"\nWith the dashboard open: {ratio:.3f}x the poll throughput without it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
