"""The promises of docs/invariants.md: examples first, then a state machine that checks them
all after every step, on the memory, SQLite and Redis stores."""

from __future__ import annotations

from .conftest import MakeClient

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
    assert client.task(fresh)["progress"] == "2%"
