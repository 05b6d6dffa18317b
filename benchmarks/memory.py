"""Memory per stored finished task: N tasks submitted through the `Emulator` API into a
`MemoryStore`, each polled once after it ended (which settles its charge), measured with
tracemalloc (Python allocations still alive) and as the process's RSS growth.

Run on its own: ``python -m benchmarks.memory --tasks 100000`` (prints JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _measure(count: int, trace: bool) -> dict[str, Any]:
    from emulator import Emulator, Settings

    from .internals import submission_type

    Submission = submission_type()  # internal: a parsed submission, no HTTP

    emulator = Emulator(Settings().replace(clock="manual", seed=7))
    await emulator.start()
    plan = emulator.catalogue.plan(
        model="gpt-image-2",
        size="1024x1024",
        aspect_ratio=None,
        quality="low",
        n=None,
        output_format="png",
    )
    # Warm every lazy structure (caches, interned names) before the baseline.
    warm = Submission("warm-up", "text2image", plan, (), None, ())
    await emulator.submit("sk-memory-bench-key", warm, "http://127.0.0.1:8000/")
    await emulator.reset()
    gc.collect()
    rss0 = _rss_bytes()
    if trace:
        tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    started = time.perf_counter()
    tasks = []
    for i in range(count):
        # A distinct prompt per task, as real clients send (about 60 characters).
        prompt = f"a blue glass sphere number {i} on a wooden table, soft light"
        submission = Submission(prompt, "text2image", plan, (), None, ())
        tasks.append(
            (await emulator.submit("sk-memory-bench-key", submission, "http://x/")).task_id
        )
    await emulator.clock.advance(10_000)  # type: ignore[attr-defined]
    finished = 0
    for task_id in tasks:
        task = await emulator.find(None, task_id)
        obs = await emulator.observe(task)
        await emulator.settle(task, obs)
        finished += obs.status == "succeeded"
    elapsed = time.perf_counter() - started
    del tasks, task, obs
    gc.collect()
    current, _peak = tracemalloc.get_traced_memory()
    rss1 = _rss_bytes()
    tracemalloc.stop()
    stored = await emulator.store.count_tasks()
    result: dict[str, Any] = {"tasks": count, "stored": stored, "finished": finished}
    if trace:
        result["bytes_per_task_tracemalloc"] = (current - base) / count
    else:  # tracemalloc's own bookkeeping would count in the RSS
        result["bytes_per_task_rss"] = (rss1 - rss0) / count
        result["seconds"] = elapsed
    return result


def measure(count: int, trace: bool) -> dict[str, Any]:
    return asyncio.run(_measure(count, trace))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rss", action="store_true", help="RSS growth instead of tracemalloc")
    args = parser.parse_args(argv)
    json.dump(measure(args.tasks, trace=not args.rss), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
