"""The pytest fixtures' cost: a full submit -> succeeded -> download test, and session start-up.

Runs pytest in a subprocess on a generated test module (N copies of one life-cycle test) with a
tiny plugin that records each phase's duration, once with ``image_emulator`` (in-process) and
once with ``image_emulator_live`` (a real loopback server), each in a fresh session.

- per test: setup + call + teardown of each test after the first (the median is reported; the
  call alone too);
- start-up: importing the plugin (which pytest does at start for every session) plus the
  setup of the session's first test (for the live fixture, that starts the server).

Every session runs with bytecode cached, as after a normal ``pip install`` (which compiles
it): ``PYTHONDONTWRITEBYTECODE`` dropped and ``PYTHONPYCACHEPREFIX`` pointed at a temporary
folder (nothing is written into the source tree) that one short session fills first. When the
caller's environment does not cache bytecode, one more short session measures the start-up
as it is there (``startup_uncached_ms``): every module compiled from source.

Run on its own: ``python -m benchmarks.fixture_timing --tests 200`` (prints JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import internals

ROOT = Path(__file__).resolve().parent.parent

TEST_MODULE = """
import pytest

BODY = {{"model": "NanoBanana2-0.5K", "prompt": "a red cube"}}


@pytest.mark.parametrize("i", range({tests}))
def test_life_cycle({fixture}, i):
    client = {fixture}.client()
    submitted = client.post("/v1/images/tasks", json=BODY)
    assert submitted.status_code == 200
    task_id = submitted.json()["data"]["task_id"]
    {fixture}.advance(3600)
    task = client.get(f"/v1/images/tasks/{{task_id}}").json()["data"]
    assert task["status"] == "succeeded"
    picture = client.get(task["result_url"])
    assert picture.status_code == 200 and picture.content[:4] == b"\\x89PNG"
    client.close()
"""

RECORDER = """
import json, os

_phases = []


def pytest_runtest_logreport(report):
    _phases.append([report.nodeid, report.when, report.duration, report.outcome])


def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["BENCH_FIXTURE_OUT"], "w") as f:
        json.dump(_phases, f)
"""

#: ``{module}``: the plugin's module, from its ``pytest11`` entry point (internals.plugin_module).
PLUGIN_IMPORT = (
    "import importlib, time, pytest, httpx; t = time.perf_counter(); "
    "importlib.import_module({module!r}); print(time.perf_counter() - t)"
)


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _env(pycache: Path | None) -> dict[str, str]:
    """The caller's environment without the emulator's and pytest's own variables; with
    bytecode written to and read from ``pycache`` when it is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "PYTEST_"))}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def plugin_import_seconds(repeats: int = 5, pycache: Path | None = None) -> float:
    """Median time to import the plugin in a fresh interpreter (pytest and httpx already in)."""
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [_python(), "-c", PLUGIN_IMPORT.format(module=internals.plugin_module())],
            env=_env(pycache),
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def run_session(fixture: str, tests: int, pycache: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fixture-bench-") as tmp:
        folder = Path(tmp)
        (folder / "test_cycle.py").write_text(TEST_MODULE.format(tests=tests, fixture=fixture))
        (folder / "bench_recorder.py").write_text(RECORDER)
        out = folder / "phases.json"
        env = _env(pycache) | {"BENCH_FIXTURE_OUT": str(out), "PYTHONPATH": str(folder)}
        proc = subprocess.run(
            [
                _python(),
                "-m",
                "pytest",
                "-q",
                "-p",
                "bench_recorder",
                "-p",
                "no:cacheprovider",
                "-o",
                "addopts=",
                "--rootdir",
                str(folder),
                str(folder / "test_cycle.py"),
            ],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"fixture benchmark ({fixture}) failed:\n{proc.stdout[-3000:]}")
        phases = json.loads(out.read_text())
    per_test: dict[str, dict[str, float]] = {}
    for nodeid, when, duration, _outcome in phases:
        per_test.setdefault(nodeid, {})[when] = duration
    ordered = list(per_test.values())
    first, rest = ordered[0], ordered[1:]
    totals = [sum(p.values()) for p in rest]
    calls = [p.get("call", 0.0) for p in rest]
    return {
        "tests": len(ordered),
        "first_setup_ms": first.get("setup", 0.0) * 1000,
        "median_test_ms": statistics.median(totals) * 1000,
        "median_call_ms": statistics.median(calls) * 1000,
        "p90_test_ms": statistics.quantiles(totals, n=10)[-1] * 1000,
    }


def measure(tests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fixture-bench-pycache-") as tmp:
        pycache = Path(tmp)
        for fixture in ("image_emulator", "image_emulator_live"):
            run_session(fixture, 3, pycache)  # compiles what a session imports, once
        plugin_ms = plugin_import_seconds(pycache=pycache) * 1000
        result: dict[str, Any] = {"plugin_import_ms": plugin_ms, "bytecode": "cached"}
        for name, fixture in (("in_process", "image_emulator"), ("live", "image_emulator_live")):
            session = run_session(fixture, tests, pycache)
            session["startup_ms"] = plugin_ms + session["first_setup_ms"]
            result[name] = session
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # This environment compiles every module at each start: say what that costs too.
        uncached = (
            plugin_import_seconds() * 1000 + run_session("image_emulator", 3)["first_setup_ms"]
        )
        result["in_process"]["startup_uncached_ms"] = uncached
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tests", type=int, default=200)
    args = parser.parse_args(argv)
    json.dump(measure(args.tests), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
