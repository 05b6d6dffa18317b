"""Small control-plane answers an application developer's review found wrong or unclear: the
seed and a task's end shown as they are, a forced success with an error, which token problem,
a trailing slash, and a PATCH under several workers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from emulator.cli import WORKER_COUNT_ENV, WORKER_SETTINGS_ENV, worker_app

from .conftest import KEY, Client, MakeClient

NANO = {"model": "NanoBanana", "prompt": "a cube"}


def test_the_config_shows_the_seed_in_use_as_health_does(make_client: MakeClient) -> None:
    client = make_client(seed=None)
    seed = client.get("/_emulator/health").json()["seed"]
    assert isinstance(seed, int)
    assert client.get("/_emulator/config").json()["seed"] == seed
    assert client.patch("/_emulator/config", json={"failure_rate": 0}).json()["seed"] == seed


@pytest.mark.parametrize("clock", ["manual", "real", "per_poll"])
def test_an_ended_task_shows_when_it_ended_on_every_clock(
    make_client: MakeClient, clock: str
) -> None:
    client = make_client(clock=clock)
    task_id = client.submit_ok(NANO)
    assert client.get(f"/_emulator/tasks/{task_id}").json()["task"]["finished_at"] is None
    client.post(f"/_emulator/tasks/{task_id}/outcome", json={"status": "failed"})
    view = client.get(f"/_emulator/tasks/{task_id}").json()
    assert view["status"] == "failed"
    finished = view["task"]["finished_at"]
    assert isinstance(finished, float) and finished >= view["task"]["created_at"]
    listed = client.get("/_emulator/tasks").json()["tasks"][0]["task"]
    assert listed["finished_at"] == finished


def test_an_ended_task_on_the_manual_clock_ended_when_its_schedule_says(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    client.advance(10_000)
    task = client.get(f"/_emulator/tasks/{task_id}").json()["task"]
    schedule = task["schedule"]
    ends = task["created_at"] + schedule["queued_s"] + schedule["processing_s"]
    assert task["finished_at"] == pytest.approx(ends)


@pytest.mark.parametrize("field", ["code", "message"])
def test_a_forced_success_with_an_error_field_is_refused(client: Client, field: str) -> None:
    task_id = client.submit_ok(NANO)
    response = client.post(
        f"/_emulator/tasks/{task_id}/outcome", json={"status": "succeeded", field: "x"}
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field} belongs to a failure")
    assert client.task(task_id)["status"] == "queued"
    nulls = {"status": "succeeded", "code": None, "message": None}  # null is absent
    assert client.post(f"/_emulator/tasks/{task_id}/outcome", json=nulls).status_code == 200


def test_a_wrong_token_is_told_apart_from_a_missing_one(make_client: MakeClient) -> None:
    client = make_client(admin_token="s3cret-token")
    missing = client.get("/_emulator/config")
    wrong = client.get("/_emulator/config", headers={"X-Emulator-Token": "stale"})
    assert missing.status_code == wrong.status_code == 401
    assert "needs the X-Emulator-Token header" in missing.json()["message"]
    message = wrong.json()["message"]
    assert "does not match the admin_token setting" in message and "stale" not in message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/_emulator/balances/"),
        ("DELETE", "/_emulator/faults/"),
        ("GET", "/_emulator/tasks/"),
        ("POST", "/_emulator/reset/"),
        # The slash written as %2F (a client quoting an id of "/"): Starlette's redirect too.
        ("DELETE", "/_emulator/faults%2F"),
        ("DELETE", "/_emulator/faults/%2F"),
        ("PUT", "/_emulator/balances/sk-key%2f"),
    ],
)
def test_a_control_plane_path_with_a_trailing_slash_is_a_404_not_a_redirect(
    client: Client, method: str, path: str
) -> None:
    client.post("/_emulator/faults", json={"effect": "drop", "match": {"endpoint": "result"}})
    response = client.request(method, path, json={"balance": 5}, follow_redirects=False)
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found" and body["data"] is None
    assert "paths under /_emulator do not end with one" in body["message"]
    # Followed, the old 307 to DELETE /_emulator/faults removed every rule.
    assert len(client.get("/_emulator/faults").json()["faults"]) == 1


def test_an_unknown_path_stays_a_plain_404_and_the_dashboard_keeps_its_redirect(
    client: Client,
) -> None:
    assert client.get("/_emulator/nope", follow_redirects=False).status_code == 404
    page = client.get("/_emulator/ui/faults/?a=1", follow_redirects=False)
    assert page.status_code == 307 and page.headers["location"].endswith("/_emulator/ui/faults?a=1")


def test_under_several_workers_a_patch_says_it_changed_this_worker_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings: dict[str, Any] = {"seed": 5, "api_keys": [KEY], "clock": "manual"}
    monkeypatch.setenv(WORKER_SETTINGS_ENV, json.dumps(settings))
    monkeypatch.setenv(WORKER_COUNT_ENV, "3")
    with TestClient(worker_app()) as client:
        patched = client.patch("/_emulator/config", json={"failure_rate": 0.5})
        assert patched.status_code == 200
        header = patched.headers["x-emulator-worker"]
        assert "workers=3" in header and "scope=this-worker-only" in header
        assert "x-emulator-worker" in client.get("/_emulator/config").headers


def test_a_browser_front_end_may_read_the_worker_header(monkeypatch: pytest.MonkeyPatch) -> None:
    # CORS hides every answer header but a few from a page's script unless it is exposed: the
    # header that says a PATCH changed one worker only is one a front-end must be able to read.
    origin = "http://localhost:5173"
    settings: dict[str, Any] = {"seed": 5, "api_keys": [KEY], "cors_origins": [origin]}
    monkeypatch.setenv(WORKER_SETTINGS_ENV, json.dumps(settings))
    monkeypatch.setenv(WORKER_COUNT_ENV, "2")
    with TestClient(worker_app()) as client:
        for answer in (
            client.get("/_emulator/config", headers={"Origin": origin}),
            client.patch(
                "/_emulator/config", json={"failure_rate": 0.5}, headers={"Origin": origin}
            ),
        ):
            assert answer.status_code == 200 and "x-emulator-worker" in answer.headers
            listed = answer.headers["access-control-expose-headers"].split(",")
            assert {"retry-after", "x-emulator-worker"} <= {h.strip().lower() for h in listed}


def test_one_worker_answers_without_the_worker_header(client: Client) -> None:
    patched = client.patch("/_emulator/config", json={"failure_rate": 0.5})
    assert "x-emulator-worker" not in patched.headers


def test_the_slash_refusal_echoes_no_key_or_result_token(client: Client) -> None:
    response = client.put("/_emulator/balances/sk-secret-key/", json={"balance": 5})
    assert response.status_code == 404 and "sk-secret-key" not in response.text
    url = client.run_to_end(NANO)["result_url"]
    token = url.split("/")[-2]
    slashed = client.get(url.removeprefix("http://testserver") + "/")
    assert slashed.status_code == 404 and token not in slashed.text
