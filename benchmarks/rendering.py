"""Rendering benchmark: uncached time, output bytes, peak RSS and cached time per picture.

For each model family (NanoBanana base, the NanoBanana2/Pro tiers, NanoBananaPro-8K,
gpt-image-2) its largest and a typical size are rendered in every output format the catalogue
allows for it. Every run is a fresh subprocess, so its peak RSS belongs to one picture:

* ``cold``: the first render in the process (loads the font, rasterises its glyphs);
* ``uncached``: then three pictures of the same size for other tasks and prompts (the median),
  as a running server renders a result nobody asked for before (a RenderCache miss);
* ``peak RSS``: ``ru_maxrss`` after the cold render minus ``ru_maxrss`` after the imports;
* ``cached``: a RenderCache ``get`` of the rendered bytes.

Figures are medians over ``--runs`` subprocesses (3 by default). CPU time is shown next to wall
time because the machine may be shared: wall time includes waiting for a core.

Prints a Markdown table on stdout (progress goes to stderr) and writes
``benchmarks/results/rendering.json``. ``--quick`` keeps the target cases only, one run each.
``--module FILE`` benchmarks another copy of ``rendering.py`` (a before/after comparison); its
relative imports (``.encoding``) load the files beside it.

Usage: ``python -m benchmarks.rendering [--quick] [--runs N] [--module FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .internals import renderer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: (family, model, size label, width, height, formats, targets in ms per format)
CASES: list[tuple[str, str, str, int, int, tuple[str, ...], dict[str, float]]] = [
    ("NanoBanana", "NanoBanana", "largest", 1024, 1024, ("png", "jpeg", "webp"), {"png": 5}),
    ("NanoBanana", "NanoBanana", "typical", 1344, 768, ("png", "jpeg", "webp"), {}),
    ("NanoBanana2/Pro", "NanoBananaPro-4K", "largest", 5504, 3072, ("png", "jpeg"), {}),
    ("NanoBanana2/Pro", "NanoBanana2-2K", "typical", 2048, 2048, ("png", "jpeg"), {}),
    (
        "NanoBananaPro-8K",
        "NanoBananaPro-8K",
        "largest",
        12672,
        5376,
        ("png", "jpeg"),
        {"png": 100, "jpeg": 150},
    ),
    (
        "NanoBananaPro-8K",
        "NanoBananaPro-8K",
        "largest",
        8192,
        8192,
        ("png", "jpeg"),
        {"png": 100, "jpeg": 150},
    ),
    ("gpt-image-2", "gpt-image-2", "largest", 3840, 2160, ("png", "jpeg", "webp"), {}),
    ("gpt-image-2", "gpt-image-2", "typical", 1024, 1024, ("png", "jpeg", "webp"), {"png": 5}),
]
QUICK = {(1024, 1024, "png"), (12672, 5376, "png"), (12672, 5376, "jpeg"), (3840, 2160, "webp")}
RSS_LIMIT_MIB = 400
PROMPT = (
    "a lighthouse at dusk over a stormy sea, oil painting in the style of Turner with dramatic "
    "light and spray"
)

# The child: renders one picture cold, then another uncached, and prints its figures as JSON.
CHILD = r"""
import json, resource, sys, time
from benchmarks.internals import renderer
rendering = renderer()  # render, RenderSpec, RenderCache wherever the package keeps them
if sys.argv[1]:
    # A package whose path is the file's folder, so its relative imports (.encoding) find the
    # copies beside it, not the checkout's.
    import importlib, os, types
    package = types.ModuleType("under_test")
    package.__path__ = [os.path.dirname(sys.argv[1])]
    sys.modules["under_test"] = package
    name = os.path.splitext(os.path.basename(sys.argv[1]))[0]
    module = importlib.import_module(f"under_test.{name}")
    rendering = types.SimpleNamespace(
        render=module.render,
        RenderSpec=getattr(module, "RenderSpec", rendering.RenderSpec),
        RenderCache=getattr(module, "RenderCache", rendering.RenderCache),
    )
model, fmt, prompt = sys.argv[2], sys.argv[5], sys.argv[6]
width, height = int(sys.argv[3]), int(sys.argv[4])
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
def spec(task, text, index):
    return rendering.RenderSpec(width=width, height=height, fmt=fmt, model=model, prompt=text,
                                task_id=task, index=index, count=4, seed=7)
def timed(s):
    wall, cpu = time.perf_counter(), time.process_time()
    data = rendering.render(s)
    return data, time.perf_counter() - wall, time.process_time() - cpu
base = rss()
data, cold, cold_cpu = timed(spec("task_" + "0a" * 16, prompt, 0))
peak = rss() - base
warm = []
for i in range(3):  # new tasks and prompts: RenderCache misses in a process that is warm
    warm.append(timed(spec(f"task_{i:02d}" + "1b" * 15, f"prompt {i}: " + prompt[::-1], i))[1:])
warm.sort()
(warm, warm_cpu) = warm[1]
cache = rendering.RenderCache(1 << 30)
cache.put(("task", 0), data)
batches = []
for _ in range(5):  # the best of 5 batches: a preempted batch says nothing about the cache
    start = time.perf_counter()
    for _ in range(1000):
        cache.get(("task", 0))
    batches.append((time.perf_counter() - start) / 1000)
cached = min(batches)
print(json.dumps({"cold_s": cold, "cold_cpu_s": cold_cpu, "uncached_s": warm,
                  "uncached_cpu_s": warm_cpu, "bytes": len(data), "peak_rss": peak,
                  "cached_s": cached}))
"""


def _run_child(module: str, model: str, width: int, height: int, fmt: str) -> dict[str, Any]:
    args = [sys.executable, "-c", CHILD, module, model, str(width), str(height), fmt, PROMPT]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} {width}x{height} {fmt}: {proc.stderr[-1000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure(module: str, runs: int, quick: bool) -> list[dict[str, Any]]:
    """One row per (case, format): medians over ``runs`` fresh subprocesses."""
    rows = []
    for family, model, label, width, height, formats, targets in CASES:
        for fmt in formats:
            if quick and (width, height, fmt) not in QUICK:
                continue
            samples = [_run_child(module, model, width, height, fmt) for _ in range(runs)]
            row: dict[str, Any] = {
                "family": family,
                "model": model,
                "size": label,
                "width": width,
                "height": height,
                "format": fmt,
                "runs": runs,
                "target_ms": targets.get(fmt),
            }
            for key in samples[0]:
                row[key] = statistics.median(sample[key] for sample in samples)
            rows.append(row)
            print(
                f"{model} {width}x{height} {fmt}: {row['uncached_s'] * 1000:.1f} ms",
                file=sys.stderr,
            )
    return rows


def _verdict(row: dict[str, Any]) -> str:
    checks = [row["peak_rss"] / 2**20 < RSS_LIMIT_MIB]
    notes = [f"RSS < {RSS_LIMIT_MIB} MiB"]
    if row["target_ms"] is not None:
        checks.append(row["uncached_s"] * 1000 <= row["target_ms"])
        notes.insert(0, f"≤ {row['target_ms']:g} ms")
    mark = "met" if all(checks) else "MISSED"
    return f"{mark} ({', '.join(notes)})"


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of ``rows``."""
    lines = [
        "| family | size | format | uncached ms (CPU ms) | cold ms | bytes | peak RSS MiB "
        "| cached µs | target |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['family']} | {row['size']} {row['width']}x{row['height']} | {row['format']} "
            f"| {row['uncached_s'] * 1000:.1f} ({row['uncached_cpu_s'] * 1000:.1f}) "
            f"| {row['cold_s'] * 1000:.1f} | {row['bytes']:,} "
            f"| {row['peak_rss'] / 2**20:.0f} | {row['cached_s'] * 1e6:.2f} | {_verdict(row)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="target cases only, one run each")
    parser.add_argument("--runs", type=int, default=None, help="subprocesses per case (3)")
    parser.add_argument("--module", default="", help="benchmark this rendering.py instead")
    parser.add_argument("--output", type=Path, default=RESULTS / "rendering.json")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    started = time.time()
    rows = measure(str(Path(args.module).resolve()) if args.module else "", runs, args.quick)
    text = table(rows)
    print(text)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "benchmark": "rendering",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "module": args.module or str(Path(renderer().origin).relative_to(ROOT)),
        "python": platform.python_version(),
        "pillow": _pillow_version(),
        "cpus": os.cpu_count(),
        "load_average_after": load,
        "runs": runs,
        "quick": args.quick,
        "rows": rows,
        "table": text,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _pillow_version() -> str:
    try:
        import PIL

        return str(PIL.__version__)
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return "?"


if __name__ == "__main__":
    sys.exit(main())
