"""The in-process fixture's pool: an emulator given back is handed to the next test whose
settings are equal (not only the same object), and never to one whose settings differ."""

from __future__ import annotations

import asyncio
from typing import Any

from emulator import Settings
from emulator.testing.pool import Pool

FAULT = {
    "id": "configured",
    "effect": {"kind": "http_error", "status": 503},
    "match": {"endpoint": "poll"},
    "probability": 0.5,
}


def settings(**values: Any) -> Settings:
    return Settings().replace(clock="manual", seed=0, **values)


def test_an_emulator_given_back_serves_the_next_equal_settings() -> None:
    pool = Pool()
    try:
        for values in ({}, {"faults": [FAULT], "failure_rate": 0.5}):  # hashable, and not
            used = pool.take(settings(**values))
            pool.give_back(used)
            again = pool.take(settings(**values))  # equal, another object
            assert again is used
            pool.give_back(again)
    finally:
        pool.close()


def test_other_settings_get_another_emulator() -> None:
    pool = Pool()
    try:
        used = pool.take(settings(failure_rate=0.5))
        pool.give_back(used)
        other = pool.take(settings(failure_rate=0.25))
        assert other is not used
        pool.give_back(other)
        again = pool.take(settings(failure_rate=0.5))
        assert again is used
        pool.give_back(again)
    finally:
        pool.close()


def test_a_task_left_on_the_loop_is_cancelled_before_the_emulator_is_kept() -> None:
    pool = Pool()
    try:
        used = pool.take(settings())

        async def leave_a_task() -> asyncio.Task[None]:
            return asyncio.get_running_loop().create_task(asyncio.sleep(3600))

        left = used.lease.run(leave_a_task())
        assert not left.done()
        pool.give_back(used)
        assert left.cancelled()
        assert pool.take(settings()) is used  # kept all the same, in its start-up state
        pool.give_back(used)
    finally:
        pool.close()
