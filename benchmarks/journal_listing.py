"""What one ``GET /_emulator/requests`` costs with a large journal: time (the event loop is held
that long: the route awaits only the store) and the Python allocations' peak (tracemalloc).

    .venv/bin/python -m benchmarks.journal_listing [--entries 100000] [--store memory|sqlite|redis]

The emulator runs in process (``journal_limit`` raised to ``--entries``), its journal filled
with copies of real entries (a submission's and a poll's, alternately: the memory store keeps
them as raw pieces built when first read, as a request's entry is) straight through the store
(100,000 requests would take minutes). Then each listing is read over ASGI three times (the median
shown, and the first, which builds what the memory store kept unbuilt), then once more under
tracemalloc (it slows what it traces): the first page (on a version without pages: the whole
journal), the page after the last-but-1,000th entry, and a filter matching nothing.
Redis: a redis-server of its own on a free loopback port, stopped by PID. Prints JSON.
Runs on a version without pages too (the pages' rows then say so), for a before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import Any

import httpx

ADMIN = {"Authorization": "Bearer sk-journal-bench"}


class _Entry:
    """A journal entry kept unbuilt (the memory store's `PendingEntry`), a copy of ``template``
    when built."""

    __slots__ = ("number", "template")

    def __init__(self, template: dict[str, Any], number: int) -> None:
        self.template, self.number = template, number

    def build(self) -> dict[str, Any]:
        return {**self.template, "task_id": f"task_{self.number:032x}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _templates(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """A real submission's entry and a real poll's (without their numbers)."""
    body = {"model": "gpt-image-2", "prompt": "a blue glass sphere on a table", "size": "1024x1024"}
    answer = await client.post("/v1/images/tasks", json=body, headers=ADMIN)
    task_id = answer.json()["data"]["task_id"]
    await client.get(f"/v1/images/tasks/{task_id}", headers=ADMIN)
    entries = (await client.get("/_emulator/requests")).json()["requests"]
    await client.delete("/_emulator/requests")
    return [{k: v for k, v in e.items() if k != "seq"} for e in entries[-2:]]


async def _fill(store: Any, templates: list[dict[str, Any]], count: int) -> None:
    pending = hasattr(store, "_journal") and not hasattr(store, "_journal_writer")
    writer = getattr(store, "_journal_writer", None)
    for i in range(count):
        template = templates[i % 2]
        if pending:
            await store.append_pending(_Entry(template, i), count)
        else:
            await store.append_journal({**template, "task_id": f"task_{i:032x}"}, count)
        if writer is not None and i % 5_000 == 4_999:
            await writer.drain()  # its backlog keeps 10,000 at most
    if writer is not None:
        await writer.drain()


async def _read(client: httpx.AsyncClient, params: dict[str, Any]) -> dict[str, Any]:
    times = []
    for _ in range(3):  # the median of three: a full GC pass may fall in any one read
        started = time.perf_counter()
        answer = await client.get("/_emulator/requests", params=params)
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    answer = await client.get("/_emulator/requests", params=params)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert answer.status_code == 200, answer.text[:300]
    body = answer.json()
    return {
        "ms": round(statistics.median(times) * 1000, 1),
        "ms_first": round(times[0] * 1000, 1),
        "peak_mb": round(peak / 1e6, 1),
        "answer_mb": round(len(answer.content) / 1e6, 2),
        "entries": len(body["requests"]),
        "next": "(no pages)" if "next" not in body else body["next"] is not None,
    }


async def _run(entries: int, store_url: str) -> dict[str, Any]:
    from emulator import Settings, create_app

    settings = Settings(seed=1, clock="manual", journal_limit=entries, store=store_url)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    result: dict[str, Any] = {"entries": entries, "store": store_url.split(":")[0]}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        emulator = app.state.emulator
        templates = await _templates(client)
        started = time.perf_counter()
        await _fill(emulator.store, templates, entries)
        result["fill_s"] = round(time.perf_counter() - started, 1)
        gc.collect()  # what filling left to collect is not a read's cost
        first = await client.get("/_emulator/requests", params={"limit": 1})
        paged = first.status_code == 200 and "next" in first.json()
        result["first page (default: whole journal without pages)"] = await _read(client, {})
        if paged:
            # The cursor of the 99,000th entry (or the last but 1,000th): a page from there.
            walked = await client.get("/_emulator/requests", params={"limit": 1})
            cursor = walked.json()["next"]
            number, epoch = cursor.split(".")
            deep = f"{int(number) + entries - 1_001}.{epoch}"
            result["page after the last-but-1,000th"] = await _read(client, {"after": deep})
            result["filter matching nothing (one page)"] = await _read(
                client, {"task_id": "task_nobody"}
            )
        else:
            result["filter matching nothing (whole journal)"] = await _read(
                client, {"task_id": "task_nobody"}
            )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.journal_listing")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--store", choices=("memory", "sqlite", "redis"), default="memory")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="journal-listing-") as tmp:
        server = None
        if args.store == "memory":
            url = "memory://"
        elif args.store == "sqlite":
            url = f"sqlite:///{tmp}/state.db"
        else:
            port = _free_port()
            redis = shutil.which("redis-server") or "redis-server"
            command = [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            server = subprocess.Popen(
                [*command, "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL
            )
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):  # bounded readiness wait
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
        try:
            result = asyncio.run(_run(args.entries, url))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=10)
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
