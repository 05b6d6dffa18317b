"""The promises of docs/invariants.md: examples first, then a state machine that checks them
all after every step, on the memory, SQLite and Redis stores.

The machine drives emulators only through their real request path (httpx with the app, over
the emulator's in-process transport, one per worker): submissions, polls (by the owner and by
other keys), clock advances, run-time settings, forced outcomes, fault rules, balances, expiry
and the task cap (small limits, and a sweep every few submissions), and restarts of a worker on
the kept store (tests/invariant_machine.py). SQLite and Redis run two workers on one store.
After every step it reads the control plane (usage, balances, tasks, journal) and checks every
invariant against what it has seen so far (tests/invariant_model.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from emulator.usecases import sweep as expiry

from .conftest import MakeClient
from .invariant_machine import EmulatorMachine
from .redis_server import RedisServer, running_redis

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}


def test_a_settings_change_never_unfinishes_or_rewinds_a_task_on_the_per_poll_clock(
    make_client: MakeClient,
) -> None:
    client = make_client(clock="per_poll", per_poll_steps=3)
    done, running = client.submit_ok(NANO), client.submit_ok(NANO)
    seen = [client.task(done) for _ in range(3)]
    assert (seen[-1]["status"], seen[-1]["progress"]) == ("succeeded", "100%")
    assert client.task(running)["progress"] == "33%"
    patched = client.patch("/_emulator/config", json={"per_poll_steps": 50})
    assert patched.status_code == 200
    after = client.task(done)
    assert (after["status"], after["progress"]) == ("succeeded", "100%")
    # A task keeps the steps it was submitted with; new tasks take the new setting.
    assert client.task(running)["progress"] == "66%"
    fresh = client.submit_ok(NANO)
    # One of its 50 steps: 2 % (33 % with the old 3 steps).
    assert client.task(fresh)["progress"] == "2%"


CONFIGURATIONS = {
    # (store, clock): examples, steps. A Redis step costs about five memory steps and a SQLite
    # one two (measured): about 50 s in all on this 2-core machine, half that under -n 2.
    ("memory", "manual"): (100, 30),
    ("memory", "per_poll"): (60, 30),
    ("sqlite", "manual"): (30, 30),
    ("sqlite", "per_poll"): (20, 30),
    ("redis", "manual"): (15, 30),
    ("redis", "per_poll"): (10, 30),
}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.mark.parametrize(("store", "clock"), list(CONFIGURATIONS))
def test_the_invariants_hold_under_random_requests(
    store: str, clock: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples, steps = CONFIGURATIONS[store, clock]
    server = request.getfixturevalue("redis_server") if store == "redis" else None
    monkeypatch.setattr(expiry, "SWEEP_EVERY", 3)  # sweep often enough to see expiry
    machine = type(
        f"{store.title()}{clock.title().replace('_', '')}Machine",
        (EmulatorMachine,),
        {
            "store": store,
            "clock": clock,
            "workers": 1 if store == "memory" else 2,
            "redis": server,
        },
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            derandomize=True,  # the same examples every run: CI never flakes
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
