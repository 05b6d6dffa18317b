"""The pytest fixtures start their emulator during setup: a start that fails fails the setup,
saying why as ``serve`` does, instead of every request of the test being refused."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from emulator.stores.sqlite import SqliteStore

from .pytester_support import run
from .redis_server import free_port
from .served import serve_refused

pytest_plugins = ["pytester"]

#: A test of each fixture on the settings given, doing nothing: only its setup can fail.
BOTH_FIXTURES = """
import pytest

@pytest.mark.image_emulator({settings})
def test_{name}_in_process(image_emulator):
    pass

@pytest.mark.image_emulator({settings})
def test_{name}_live(image_emulator_live):
    pass
"""

_PREFIX = "image-task-emulator: cannot start: "


def _kept_with(clock: str, state: Path) -> None:
    """A state_dir whose store was kept with ``clock`` (as a first emulator on it leaves it)."""

    async def keep() -> None:
        store = SqliteStore(state / "emulator.db")
        try:
            assert await store.claim_clock(clock) == clock
        finally:
            await store.close()

    asyncio.run(keep())


def _serve_refuses(*args: str) -> str:
    """Why ``serve`` with ``args`` exits 2: the problem it prints."""
    stderr = serve_refused(*args)
    assert stderr.startswith(_PREFIX), stderr
    return stderr.strip().removeprefix(_PREFIX)


def test_a_store_kept_with_another_clock_fails_the_setup_as_serve_says_it(
    pytester: pytest.Pytester,
) -> None:
    state = pytester.path / "state"
    _kept_with("real", state)
    problem = _serve_refuses("--state-dir", str(state), "--clock", "manual")
    assert problem.startswith("setting 'clock': ")
    source = BOTH_FIXTURES.format(name="manual", settings=f"state_dir={str(state)!r}")
    source += BOTH_FIXTURES.format(
        name="real", settings=f"state_dir={str(state)!r}, clock='real'"
    ).replace("import pytest\n", "")
    result = run(pytester, source)
    # Refused at setup, never run: before, the test ran and every request was answered 400.
    result.assert_outcomes(passed=2, errors=2)
    lines = result.stdout.lines
    for fixture in ("image_emulator", "image_emulator_live"):
        assert f"{fixture}: cannot start: {problem}" in lines
    result.stdout.fnmatch_lines(
        ["ERROR *::test_manual_in_process - *", "ERROR *::test_manual_live - *"], consecutive=True
    )


def test_an_unreachable_redis_or_an_unreadable_file_fails_the_setup_saying_so(
    pytester: pytest.Pytester,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    newer = pytester.path / "newer" / "emulator.db"
    _kept_with("manual", newer.parent)
    with sqlite3.connect(newer) as db:  # the file of a later release
        db.execute("UPDATE meta SET value = 99 WHERE name = 'schema'")
    db.close()
    source = BOTH_FIXTURES.format(name="redis", settings=f"store={url!r}")
    source += BOTH_FIXTURES.format(
        name="file", settings=f"state_dir={str(newer.parent)!r}"
    ).replace("import pytest\n", "")
    result = run(pytester, source)
    result.assert_outcomes(errors=4)
    # The fixtures' own lines, not the short summary's: its width follows the terminal's.
    redis = [
        line
        for line in result.stdout.lines
        if line.startswith("image_emulator") and "(Redis) is unavailable" in line
    ]
    assert [line.partition(":")[0] for line in redis] == ["image_emulator", "image_emulator_live"]
    for line in redis:
        assert line.endswith(f"(is Redis running at {url}?)")
        assert ": cannot start: the emulator's store (Redis) is unavailable" in line
    problem = f"setting 'store': store 'sqlite://{newer}' cannot be opened: schema version 99"
    for fixture in ("image_emulator", "image_emulator_live"):
        result.stdout.fnmatch_lines([f"{fixture}: cannot start: {problem}, *"])
