"""The Makefile's housekeeping targets, run for real by make in a scratch copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent
#: What the Makefile's targets leave behind (setup, check, test, contract): clean removes it.
LEFT_BEHIND = (
    ".venv",
    ".pytest_cache",
    ".hypothesis",
    ".schemathesis",
    ".mypy_cache",
    ".ruff_cache",
    ".import_linter_cache",
    "build",
    "image_task_emulator.egg-info",
)
#: What a user made or measured, and the sources: clean keeps it.
KEPT = ("reports/contract-full/summary.txt", "benchmarks/results/latest.md", "emulator/x.py")


def make(target: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``make target`` as a user types it. Under ``make test`` the outer make's MAKELEVEL
    and MAKEFLAGS reach this one, which then prints "make[1]: Entering directory" lines."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", target], cwd=cwd, env=env, capture_output=True, text=True)


def test_clean_removes_what_the_targets_leave_and_nothing_else(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in LEFT_BEHIND:
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    for name in KEPT:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    done = make("clean", tmp_path)
    assert done.returncode == 0, done.stderr
    assert [n for n in LEFT_BEHIND if (tmp_path / n).exists()] == []
    assert [n for n in KEPT if not (tmp_path / n).exists()] == []


def test_help_lists_every_target_with_what_it_does() -> None:
    phony = re.search(r"^\.PHONY: (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert phony is not None
    done = make("help", ROOT)
    assert done.returncode == 0, done.stderr
    described = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert sorted(described) == sorted(phony.group(1).split())
    assert all(len(line.split()) > 2 for line in described.values())
