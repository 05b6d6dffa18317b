"""The wall clock never runs backwards, whatever the system clock does."""

from __future__ import annotations

import asyncio

import pytest

from emulator.core import clock as clock_module
from emulator.core.clock import WallClock


def test_wall_clock_stands_still_when_the_system_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readings = iter([1000.0, 990.0, 995.0, 1001.0])
    monkeypatch.setattr(clock_module.time, "time", lambda: next(readings))
    wall = WallClock()
    seen = [asyncio.run(wall.now()) for _ in range(4)]
    assert seen == [1000.0, 1000.0, 1000.0, 1001.0]
