"""``calibrate DIR -o timing.toml``: the upstream's task durations recovered from its recorded
poll sequences, within a stated tolerance, into a file ``timing_file`` accepts.

The "real service" runs on the manual clock with known timings; the client polls each task
every 1-2 virtual seconds (a seeded draw) and the recorder stamps lines with the same virtual
clock, so 120 tasks are recorded in seconds and nothing sleeps.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import Settings, create_app
from emulator.cli import main
from emulator.core.timing import Timing

from .record_support import Driver, recorder, serving, task_of

TRUE_TIMING = """
["*"]
queued = {dist = "uniform", low = 1.0, high = 4.0}
processing = {dist = "lognormal", median = 9.0, sigma = 0.3}

["gpt-image-2/1K/low"]
queued = {dist = "fixed", value = 2.0}
processing = {dist = "lognormal", median = 20.0, sigma = 0.25}
"""
GROUPS = {
    "NanoBanana2-0.5K": {"model": "NanoBanana2-0.5K", "prompt": "a"},
    "gpt-image-2/1K/low": {
        "model": "gpt-image-2",
        "prompt": "b",
        "size": "1024x768",
        "quality": "low",
    },
}
TASKS_PER_GROUP = 60
#: docs/recording.md states it: with 60 tasks an entry polled every 1-2 s, the fitted 10th,
#: 50th and 90th percentiles are within 25% or 0.5 s of the true ones, whichever is larger
#: (12 seeds: at most 28% off, and then 0.36 s, on the 10th percentile of a 1-4 s queue).
TOLERANCE, TOLERANCE_SECONDS = 0.25, 0.5


def quantile(spec: dict[str, Any], p: float) -> float:
    if spec["dist"] == "fixed":
        return float(spec["value"])
    if spec["dist"] == "uniform":
        return float(spec["low"] + p * (spec["high"] - spec["low"]))
    return float(spec["median"] * math.exp(spec["sigma"] * statistics.NormalDist().inv_cdf(p)))


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("timed")
    timing = directory.parent / f"{directory.name}-timing.toml"
    timing.write_text(TRUE_TIMING)
    app = create_app(Settings(seed=5, clock="manual", timing_file=str(timing)))
    now = [0.0]
    rng = random.Random(5)
    with serving(app) as upstream, recorder(upstream, directory, clock=lambda: now[0]) as proxy:
        control = httpx.Client(base_url=upstream)
        driver = Driver(proxy)
        due: dict[str, float] = {}
        for _ in range(TASKS_PER_GROUP):
            for body in GROUPS.values():
                task_id = str(task_of(driver.submit(body).json())["task_id"])
                due[task_id] = now[0] + rng.uniform(1.0, 2.0)
        while due:
            next_at = min(due.values())
            control.post("/_emulator/clock/advance", json={"seconds": next_at - now[0]})
            now[0] = next_at
            for task_id in [t for t, at in due.items() if at <= now[0]]:
                if task_of(driver.poll(task_id).json())["status"] in ("succeeded", "failed"):
                    del due[task_id]
                else:
                    due[task_id] = now[0] + rng.uniform(1.0, 2.0)
        driver.close()
        control.close()
    return directory


def test_calibrate_recovers_the_upstream_timings(
    cassette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "timing.toml"
    assert main(["calibrate", str(cassette), "-o", str(out)]) == 0
    fitted = tomllib.loads(out.read_text())
    truth = tomllib.loads(TRUE_TIMING)
    for group in GROUPS:
        for phase in ("queued", "processing"):
            true = truth.get(group, {}).get(phase) or truth["*"][phase]
            got = fitted[group][phase]
            for p in (0.1, 0.5, 0.9):
                error = abs(quantile(got, p) - quantile(true, p))
                allowed = max(TOLERANCE * quantile(true, p), TOLERANCE_SECONDS)
                assert error <= allowed, (group, phase, p, got, error)
    # Every gpt-image-2 task left the queue after exactly 2 s: one value explains them all.
    assert fitted["gpt-image-2/1K/low"]["queued"]["dist"] == "fixed"
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == [
        "entry",
        "phase",
        "samples",
        "bracket",
        "dist",
        "parameters",
        "loglik/n",
        "KS",
    ]
    assert f"gpt-image-2/1K/low  processing  {TASKS_PER_GROUP} " in table


def test_the_written_file_is_a_timing_file_the_emulator_takes(
    cassette: Path, tmp_path: Path
) -> None:
    out = tmp_path / "timing.toml"
    assert main(["calibrate", str(cassette), "-o", str(out), "--dist", "lognormal"]) == 0
    timing = Timing.load(out)
    queued, processing = timing.durations("gpt-image-2", "1K", "low")
    assert (queued.dist, processing.dist) == ("lognormal", "lognormal")
    assert 17.0 < processing.a < 23.0  # the median, from --dist lognormal
    app = create_app(Settings(timing_file=str(out), clock="manual"))
    assert (
        app.state.emulator.timing.durations("NanoBanana2-0.5K", None, None)[1].dist == "lognormal"
    )


def test_a_recording_of_tasks_never_seen_ending_cannot_be_calibrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(Settings(seed=1, clock="manual"))
    with serving(app) as upstream, recorder(upstream, tmp_path) as proxy:
        driver = Driver(proxy)
        driver.submit(GROUPS["NanoBanana2-0.5K"])
        driver.close()
    assert main(["calibrate", str(tmp_path), "-o", str(tmp_path / "t.toml")]) == 2
    assert "cannot fit queued and processing: no task" in capsys.readouterr().out
    assert not (tmp_path / "t.toml").exists()


def test_without_scipy_calibrate_says_how_to_install_it(
    cassette: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "scipy", None)
    assert main(["calibrate", str(cassette), "-o", str(tmp_path / "t.toml")]) == 2
    assert "pip install 'image-task-emulator[calibrate]'" in capsys.readouterr().out


def test_a_time_that_is_not_a_number_skips_its_line_not_calibrate(
    cassette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # json reads "t": NaN; every bracket made of it was NaN and the fit divided by zero.
    rows = [json.loads(line) for line in (cassette / "cassette.jsonl").read_text().splitlines()]
    for row in rows:
        if row["kind"] == "poll":
            row["t"] = math.nan
    (tmp_path / "cassette.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["calibrate", str(tmp_path), "-o", str(tmp_path / "t.toml")]) == 2
    out = capsys.readouterr().out
    first = next(i for i, row in enumerate(rows, 1) if row["kind"] == "poll")
    said = f"cassette.jsonl line {first} holds a number that is not finite (NaN); skipped"
    assert f"calibrate: warning: {said}" in out
    assert "cannot fit queued and processing: no task" in out
