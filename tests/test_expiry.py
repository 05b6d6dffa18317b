"""Bounded memory: finished tasks expire after task_ttl_seconds; at most max_tasks are kept."""

from __future__ import annotations

import base64
from typing import Any

import anyio
import pytest

from emulator.usecases import sweep as expiry

from .conftest import KEY, Client, MakeClient, png_bytes

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}
OTHER = {"Authorization": "Bearer sk-someone-else"}


def end_now(client: Client, task_id: str, status: str = "succeeded") -> None:
    """End the task at the current clock time."""
    response = client.post(f"/_emulator/tasks/{task_id}/outcome", json={"status": status})
    assert response.status_code == 200, response.text


def test_a_finished_task_expires_ttl_seconds_after_it_ended(make_client: MakeClient) -> None:
    client = make_client(task_ttl_seconds=100)
    task_id = client.submit_ok(NANO)
    client.advance(0.5)
    end_now(client, task_id)  # ended at 0.5
    client.advance(99.5)
    assert client.task(task_id)["status"] == "succeeded"
    client.advance(0.5)
    response = client.get(f"/v1/images/tasks/{task_id}")
    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"
    assert "expired" in response.json()["message"] and "100 s" in response.json()["message"]
    # Another key is not told the task ever existed (SPEC D-1).
    other = client.get(f"/v1/images/tasks/{task_id}", headers=OTHER).json()
    assert other["code"] == "task_not_found" and "expired" not in other["message"]


def test_the_relay_status_option_applies_to_expired_tasks(make_client: MakeClient) -> None:
    client = make_client(task_ttl_seconds=10, unknown_task_status=400)
    task_id = client.submit_ok(NANO)
    end_now(client, task_id, "failed")
    client.advance(10)
    response = client.get(f"/v1/images/tasks/{task_id}")
    assert response.status_code == 400
    assert response.json()["code"] == "task_not_exist" and "expired" in response.json()["message"]


def test_ttl_zero_keeps_finished_tasks_forever(make_client: MakeClient) -> None:
    client = make_client(task_ttl_seconds=0)
    task_id = client.submit_ok(NANO)
    client.advance(10**9)
    assert client.task(task_id)["status"] == "succeeded"


def test_result_images_of_an_expired_task_are_gone(make_client: MakeClient) -> None:
    client = make_client(task_ttl_seconds=10)
    task_id = client.submit_ok(NANO)
    end_now(client, task_id)
    url = client.task(task_id)["result_url"]
    assert client.get(url).status_code == 200
    client.advance(10)
    assert client.get(url).status_code == 404


def test_a_sweep_removes_expired_tasks_with_their_reference_pictures(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(expiry, "SWEEP_EVERY", 1)
    client = make_client(task_ttl_seconds=10)
    reference = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    old = client.submit_ok(NANO | {"image": reference})
    store = client.app.state.emulator.store  # type: ignore[attr-defined]
    assert anyio.run(store.get_blob, f"ref:{old}") is not None
    end_now(client, old)
    client.advance(10)
    new = client.submit_ok(NANO)  # this submission sweeps
    listed = [t["task"]["task_id"] for t in client.get("/_emulator/tasks").json()["tasks"]]
    assert listed == [new]
    assert anyio.run(store.get_blob, f"ref:{old}") is None


def test_a_full_store_evicts_the_earliest_finished_task_first(make_client: MakeClient) -> None:
    client = make_client(max_tasks=4, task_ttl_seconds=0)
    t1, t2, t3, t4 = (client.submit_ok(NANO) for _ in range(4))
    client.advance(0.1)
    end_now(client, t3)  # ends first
    client.advance(0.1)
    end_now(client, t1)
    t5 = client.submit_ok(NANO)
    assert client.get(f"/v1/images/tasks/{t3}").status_code == 404
    listed = [t["task"]["task_id"] for t in client.get("/_emulator/tasks").json()["tasks"]]
    assert listed == [t1, t2, t4, t5]


def test_a_store_full_of_unfinished_tasks_refuses_with_429(make_client: MakeClient) -> None:
    client = make_client(max_tasks=3)
    kept = [client.submit_ok(NANO) for _ in range(3)]
    refused = client.submit(NANO)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert "max_tasks=3" in refused.json()["message"]
    assert refused.headers["Retry-After"] == "1"
    stored = [t["task"] for t in client.get("/_emulator/tasks").json()["tasks"]]
    assert [t["task_id"] for t in stored] == kept

    # Eviction takes the task that ended first (all were submitted at 0 on the manual clock).
    def ends(task: dict[str, Any]) -> float:
        schedule = task["schedule"]
        end: float | None = schedule["end_s"]  # a failure's, else the processing's end
        return schedule["queued_s"] + schedule["processing_s"] if end is None else end

    first = min(stored, key=ends)
    client.advance(10_000)  # they finish: room again
    placed = client.submit_ok(NANO)
    listed = [t["task"]["task_id"] for t in client.get("/_emulator/tasks").json()["tasks"]]
    assert sorted(listed) == sorted([*(i for i in kept if i != first["task_id"]), placed])


def test_a_store_above_a_lowered_max_tasks_sheds_a_bounded_step_and_says_why_it_refuses(
    make_client: MakeClient,
) -> None:
    # 1,005 finished tasks, then max_tasks lowered to 3: one submission's step evicts at most
    # 1,000 (stores/base.EVICT_AT_MOST), so the first is refused with both causes named and
    # the next, with 5 left, makes room.
    client = make_client(max_tasks=2000, task_ttl_seconds=0)
    for _ in range(1005):
        client.submit_ok(NANO)
    client.advance(10_000)  # every one has finished
    response = client.patch("/_emulator/config", json={"max_tasks": 3})
    assert response.status_code == 200, response.text
    refused = client.submit(NANO)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    message = refused.json()["message"]
    assert "max_tasks=3" in message and "lowered" in message and "1000" in message
    assert len(client.get("/_emulator/tasks").json()["tasks"]) == 5
    placed = client.submit_ok(NANO)
    listed = [t["task"]["task_id"] for t in client.get("/_emulator/tasks").json()["tasks"]]
    assert len(listed) == 3 and listed[-1] == placed


def test_an_evicted_task_that_was_never_polled_gives_its_hold_back(
    make_client: MakeClient,
) -> None:
    client = make_client(max_tasks=2)
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 1000})
    first = client.submit_ok(NANO | {"prompt": "first"})
    end_now(client, first, "failed")  # its whole hold is released
    client.submit_ok(NANO)
    client.submit_ok(NANO)  # evicts the first
    usage = client.get(f"/_emulator/usage?task_id={first}").json()["entries"]
    assert [(e["state"], e["amount"]) for e in usage] == [("released", 0)]


# -- the per_poll clock: only polls end a task -------------------------------------------------
def test_on_the_per_poll_clock_a_full_store_of_unpolled_tasks_refuses_and_keeps_them(
    make_client: MakeClient,
) -> None:
    # Durations so short that the wall clock has long passed their ends: only polls count.
    client = make_client(clock="per_poll", max_tasks=10, time_scale=1e-9)
    kept = [client.submit_ok(NANO) for _ in range(10)]
    refused = client.submit(NANO)
    assert refused.status_code == 429 and "max_tasks=10" in refused.json()["message"]
    usage = client.get("/_emulator/usage").json()["entries"]
    assert [e["state"] for e in usage] == ["held"] * 10  # nothing settled: nothing ended
    for task_id in kept:
        assert client.get(f"/v1/images/tasks/{task_id}").status_code == 200


def test_on_the_per_poll_clock_an_unpolled_task_never_expires(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(expiry, "SWEEP_EVERY", 1)
    client = make_client(clock="per_poll", task_ttl_seconds=1e-6, time_scale=1e-9)
    unpolled = client.submit_ok(NANO)
    for _ in range(3):
        client.submit_ok(NANO)  # each sweeps
    assert client.task(unpolled)["status"] == "processing"
