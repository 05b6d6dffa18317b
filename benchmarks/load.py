"""HTTP load with wrk: one workload against one server at one concurrency, as numbers."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .servers import API_KEY, SUBMIT_BODY, Server

SCRIPT = Path(__file__).resolve().parent / "bench.lua"
WORKLOADS = ("submit", "poll", "mixed")
#: wrk's socket error counters (besides answers that are not 2xx).
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


def run_wrk(
    wrk: str,
    server: Server,
    workload: str,
    connections: int,
    seconds: float,
    ids_file: Path,
    download_ids: int,
) -> dict[str, Any]:
    """One wrk run; req/s, latency percentiles (ms) and errors: socket errors and answers
    that are not 2xx, in all (``errors``) and by status code or socket error (``statuses``)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    env = dict(os.environ)
    env |= {
        "BENCH_MODE": workload,
        "BENCH_KEY": API_KEY,
        "BENCH_BODY": json.dumps(SUBMIT_BODY),
        "BENCH_IDS": str(ids_file),
        "BENCH_DOWNLOAD": server.download,
        "BENCH_DL_IDS": str(download_ids),
        "BENCH_OUT": str(out_path),
    }
    # One wrk thread: it drives tens of thousands of requests a second, more than any server
    # here answers, and leaves the second core to the server.
    threads = 1
    cmd = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s"]
    cmd += ["--timeout", "5s", "-s", str(SCRIPT), server.base]
    try:
        cpu = server.cpu_seconds()
        subprocess.run(
            cmd, env=env, check=True, timeout=seconds + 30, capture_output=True, cwd=SCRIPT.parent
        )
        cpu = server.cpu_seconds() - cpu
        raw = json.loads(out_path.read_text())
    finally:
        out_path.unlink(missing_ok=True)
    # What each error was: a non-2xx answer by its status code (counted by bench.lua; wrk's
    # own "status" errors are the subset of 400 and above), a socket error by its kind.
    statuses = {str(code): int(n) for code, n in sorted(raw["statuses"].items()) if n}
    for kind in SOCKET_ERRORS:
        if raw[f"errors_{kind}"]:
            statuses[f"socket {kind}"] = int(raw[f"errors_{kind}"])
    duration = raw["duration_us"] / 1e6
    return {
        "rps": raw["requests"] / duration if duration else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": sum(statuses.values()),
        "statuses": statuses,
        "requests": raw["requests"],
        # The server's CPU (every process and thread) per request answered during the run.
        "cpu_us": cpu / raw["requests"] * 1e6 if raw["requests"] else None,
    }
