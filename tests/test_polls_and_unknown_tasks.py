"""Polls are counted on every clock (``/_emulator/tasks/{id}`` shows them), and a fault that
holds or refuses an answer also applies to a poll of a task that does not exist: a client's
timeout and retry code must be testable before it has a task id that works."""

from __future__ import annotations

import pytest

from .conftest import MakeClient

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}
UNKNOWN = "task_" + "0" * 32


@pytest.mark.parametrize("clock", ["real", "manual", "per_poll"])
def test_polls_are_counted_on_every_clock(make_client: MakeClient, clock: str) -> None:
    client = make_client(clock=clock)
    task_id = client.submit_ok(NANO)
    for _ in range(2):
        assert client.get(f"/v1/images/tasks/{task_id}").status_code == 200
    client.head(f"/v1/images/tasks/{task_id}")  # looks without polling
    view = client.get(f"/_emulator/tasks/{task_id}").json()
    assert view["task"]["polls"] == 2


def test_another_keys_poll_is_not_counted(make_client: MakeClient) -> None:
    client = make_client()
    task_id = client.submit_ok(NANO)
    other = client.get(f"/v1/images/tasks/{task_id}", headers={"Authorization": "Bearer sk-x"})
    assert other.status_code == 404
    assert client.get(f"/_emulator/tasks/{task_id}").json()["task"]["polls"] == 0


def test_a_hang_fires_on_a_poll_of_an_unknown_task(make_client: MakeClient) -> None:
    client = make_client()
    rule = {"match": {"endpoint": "poll"}, "effect": {"kind": "hang", "seconds": 0.01}}
    assert client.post("/_emulator/faults", json=rule).status_code == 201
    assert client.get(f"/v1/images/tasks/{UNKNOWN}").status_code == 404  # after the hold
    entry = client.get("/_emulator/requests").json()["requests"][-1]
    assert (entry["status"], entry["fault"]) == (404, "rule-1")
    assert client.get("/_emulator/faults").json()["faults"][0]["hits"] == 1


@pytest.mark.parametrize("status", [404, 400])
def test_an_http_error_fires_on_a_poll_of_an_unknown_task(
    make_client: MakeClient, status: int
) -> None:
    client = make_client(unknown_task_status=status)
    rule = {"match": {"endpoint": "poll"}, "effect": {"kind": "http_error", "status": 503}}
    assert client.post("/_emulator/faults", json=rule).status_code == 201
    assert client.get(f"/v1/images/tasks/{UNKNOWN}").status_code == 503


def test_body_faults_and_task_matches_skip_a_poll_of_an_unknown_task(
    make_client: MakeClient,
) -> None:
    # malformed/empty mangle an answer the work produced, and a model can only match a task
    # that exists: neither applies (nor spends a hit) on an unknown task's 404.
    client = make_client()
    rules = [
        {"match": {"endpoint": "poll", "model": "NanoBanana2-0.5K"}, "effect": "drop"},
        {"match": {"endpoint": "poll"}, "effect": "malformed"},
    ]
    assert client.post("/_emulator/faults", json=rules).status_code == 201
    response = client.get(f"/v1/images/tasks/{UNKNOWN}")
    assert response.status_code == 404 and response.json()["code"] == "task_not_found"
    assert [r["hits"] for r in client.get("/_emulator/faults").json()["faults"]] == [0, 0]
