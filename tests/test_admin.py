"""The control plane: config, clock, tasks, outcomes, journal, token, reset, determinism."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import KEY, Client

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}


def test_config_shows_settings_and_patch_changes_them(client: Client) -> None:
    assert client.get("/_emulator/config").json()["envelope"] == "wrapped"
    response = client.patch("/_emulator/config", json={"envelope": "bare", "failure_rate": 0.5})
    assert response.status_code == 200
    assert response.json()["failure_rate"] == 0.5
    assert "data" not in client.submit(NANO).json()


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"envelope": "naked"}, "'envelope'"),
        ({"failure_rate": 2}, "failure_rate must be between 0 and 1"),
        ({"port": 1}, "'port' cannot change while serving"),
        # Uvicorn's loggers belong to the process (all the emulators of a pytest run, one
        # worker of several): not a setting one emulator could change while serving.
        ({"log_level": "critical"}, "'log_level' cannot change while serving"),
        ({"colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_bad_config_patch_is_rejected(client: Client, patch: dict[str, Any], needle: str) -> None:
    response = client.patch("/_emulator/config", json=patch)
    assert response.status_code == 400
    assert needle in response.json()["message"]


def test_patching_enabled_models_reloads_the_catalogue(client: Client) -> None:
    client.patch("/_emulator/config", json={"enabled_models": ["gpt-image-2"]})
    assert client.submit(NANO).json()["code"] == "model_not_found"


def test_clock_reports_and_advances(client: Client) -> None:
    assert client.get("/_emulator/clock").json() == {"mode": "manual", "now": 0.0}
    assert client.post("/_emulator/clock/advance", json={"seconds": 2.5}).json()["now"] == 2.5


def test_task_detail_shows_schedule_owner_and_request(client: Client) -> None:
    task_id = client.submit_ok(NANO | {"aspect_ratio": "16:9"})
    view = client.get(f"/_emulator/tasks/{task_id}").json()
    assert view["status"] == "queued"
    task = view["task"]
    assert task["model"] == "NanoBanana2-0.5K" and task["aspect_ratio"] == "16:9"
    assert task["schedule"]["queued_s"] > 0 and task["schedule"]["processing_s"] > 0
    assert KEY not in str(view)  # the owner is a fingerprint, never the key


def test_forced_success_ends_the_task_now(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    response = client.post(f"/_emulator/tasks/{task_id}/outcome", json={"status": "succeeded"})
    assert response.status_code == 200
    task = client.task(task_id)
    assert task["status"] == "succeeded"
    assert client.get(task["result_url"]).status_code == 200


def test_forced_failure_carries_its_code(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    client.post(
        f"/_emulator/tasks/{task_id}/outcome",
        json={"status": "failed", "code": "content_policy_violation"},
    )
    assert client.task(task_id)["error"]["code"] == "content_policy_violation"


def test_a_finished_task_cannot_be_forced_again(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    client.post(f"/_emulator/tasks/{task_id}/outcome", json={"status": "failed"})
    again = client.post(f"/_emulator/tasks/{task_id}/outcome", json={"status": "succeeded"})
    assert again.status_code == 409
    assert client.task(task_id)["status"] == "failed"


def test_outcome_needs_a_valid_status(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    response = client.post(f"/_emulator/tasks/{task_id}/outcome", json={"status": "done"})
    assert response.status_code == 400
    unknown = client.post("/_emulator/tasks/task_x/outcome", json={"status": "failed"})
    assert unknown.status_code == 404


def test_tasks_list_filters_by_status_and_model(client: Client) -> None:
    first = client.submit_ok(NANO)
    client.submit_ok({"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    client.post(f"/_emulator/tasks/{first}/outcome", json={"status": "succeeded"})
    done = client.get("/_emulator/tasks", params={"status": "succeeded"}).json()["tasks"]
    assert [v["task"]["task_id"] for v in done] == [first]
    gpt = client.get("/_emulator/tasks", params={"model": "gpt-image-2"}).json()["tasks"]
    assert len(gpt) == 1


def test_journal_records_requests_with_the_key_masked(client: Client) -> None:
    task_id = client.submit_ok(NANO | {"prompt": "p" * 500})
    client.task(task_id)
    client.submit({"model": "nope", "prompt": "x"})
    entries = client.get("/_emulator/requests").json()["requests"]
    assert [(e["endpoint"], e["status"]) for e in entries] == [
        ("submit", 200),
        ("poll", 200),
        ("submit", 400),
    ]
    first = entries[0]
    assert first["task_id"] == task_id
    assert first["headers"]["authorization"] == "Bearer sk-t…key"
    assert first["api_key"] == "sk-t…key"
    assert KEY not in str(entries)
    assert first["body"]["fields"]["prompt"].endswith("…")
    assert len(first["body"]["fields"]["prompt"]) < 300


def test_journal_filters_and_clears(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    client.task(task_id)
    by_task = client.get("/_emulator/requests", params={"task_id": task_id}).json()["requests"]
    assert len(by_task) == 2
    gets = client.get("/_emulator/requests", params={"method": "get"}).json()["requests"]
    assert [e["endpoint"] for e in gets] == ["poll"]
    assert client.delete("/_emulator/requests").status_code == 204
    assert client.get("/_emulator/requests").json()["requests"] == []


def test_journal_is_bounded(make_client: Any) -> None:
    client = make_client(journal_limit=3)
    for _ in range(5):
        client.submit(NANO)
    assert len(client.get("/_emulator/requests").json()["requests"]) == 3


def test_faults_can_be_deleted_one_by_one_or_all(client: Client) -> None:
    client.post("/_emulator/faults", json=[{"effect": "drop"}, {"effect": "empty"}])
    assert client.delete("/_emulator/faults/rule-1").status_code == 204
    assert client.delete("/_emulator/faults/rule-1").status_code == 404
    assert [r["id"] for r in client.get("/_emulator/faults").json()["faults"]] == ["rule-2"]
    assert client.delete("/_emulator/faults").status_code == 204
    assert client.get("/_emulator/faults").json()["faults"] == []


def test_admin_token_guards_the_control_plane_but_not_results(make_client: Any) -> None:
    client = make_client(admin_token="s3cret")
    assert client.get("/_emulator/tasks").status_code == 401
    assert client.get("/_emulator/tasks", headers={"X-Emulator-Token": "s3cret"}).status_code == 200
    assert client.get("/_emulator/health").status_code == 200
    task_id = client.submit_ok(NANO)
    done = client.post(
        f"/_emulator/tasks/{task_id}/outcome",
        json={"status": "succeeded"},
        headers={"X-Emulator-Token": "s3cret"},
    )
    assert done.status_code == 200
    assert client.get(client.task(task_id)["result_url"]).status_code == 200
    assert (
        client.get("/_emulator/config", headers={"X-Emulator-Token": "s3cret"}).json()[
            "admin_token"
        ]
        == "***"
    )


def test_reset_forgets_tasks_journal_clock_balances_and_usage(client: Client) -> None:
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 100})
    task_id = client.submit_ok(NANO)
    client.advance(5)
    client.patch("/_emulator/config", json={"failure_rate": 0.5})
    assert client.post("/_emulator/reset").status_code == 200
    assert client.get("/_emulator/balances").json()["balances"] == []
    usage = client.get("/_emulator/usage").json()
    assert usage["entries"] == [] and usage["totals"]["paid"] == usage["totals"]["held"] == 0
    assert client.get("/_emulator/config").json()["failure_rate"] == 0.5  # settings stay
    client.patch("/_emulator/config", json={"failure_rate": 0})
    assert client.get("/_emulator/tasks").json()["tasks"] == []
    assert client.get("/_emulator/requests").json()["requests"] == []
    assert client.get("/_emulator/clock").json()["now"] == 0.0
    assert client.get(f"/v1/images/tasks/{task_id}").status_code == 404
    # Same seed again after reset: the same first task id.
    assert client.submit_ok(NANO) == task_id


def test_same_seed_and_requests_give_the_same_everything(make_client: Any) -> None:
    def run() -> tuple[Any, ...]:
        client = make_client(seed=77, failure_rate=0.3)
        client.post(
            "/_emulator/faults",
            json={"effect": {"kind": "http_error", "status": 503}, "probability": 0.3},
        )
        statuses, ids = [], []
        for i in range(12):
            response = client.submit(NANO | {"prompt": f"cat {i}"})
            statuses.append(response.status_code)
            if response.status_code == 200:
                ids.append(response.json()["data"]["task_id"])
        client.advance(10_000)
        views = [client.get(f"/_emulator/tasks/{i}").json() for i in ids]
        images = [client.get(v["result_urls"][0]).content for v in views if v["result_urls"]]
        schedules = [v["task"]["schedule"] for v in views]
        return statuses, ids, schedules, [v["status"] for v in views], images

    first, second = run(), run()
    assert first == second
    assert 503 in first[0] and "failed" in first[3]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/_emulator/clock/advance", b'{"seconds": ' + b"9" * 5000 + b"}", "too many digits"),
        ("/_emulator/clock/advance", b"[" * 5000, "nested too deeply"),
        ("/_emulator/clock/advance", b"[" * 100_000, "more than the limit of 10000 JSON values"),
        ("/_emulator/faults", b'{"times": ' + b"9" * 5000 + b"}", "too many digits"),
        ("/_emulator/faults", b"[" * 5000, "nested too deeply"),
        ("/_emulator/faults", b"not json", "not valid JSON"),
        ("/_emulator/clock/advance", b"[]", "request body must be a JSON object"),
    ],
)
def test_unreadable_control_plane_bodies_are_a_400(
    client: Client, path: str, body: bytes, needle: str
) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert needle in response.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/_emulator/health",
        "/_emulator/config",
        "/_emulator/clock",
        "/_emulator/tasks",
        "/_emulator/faults",
        "/_emulator/requests",
        "/_emulator/usage",
        "/_emulator/balances",
    ],
)
def test_head_on_a_control_plane_read_answers_like_its_get(client: Client, path: str) -> None:
    head, get = client.head(path), client.get(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_of_a_task_view_and_of_an_unknown_one(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    assert client.head(f"/_emulator/tasks/{task_id}").status_code == 200
    assert client.head(f"/_emulator/tasks/task_{'0' * 32}").status_code == 404


def test_forced_outcome_text_is_checked_and_polls_keep_working(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    body = b'{"status": "failed", "message": "\\udc00 lone"}'
    response = client.post(
        f"/_emulator/tasks/{task_id}/outcome",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "lone surrogate" in response.json()["message"]
    too_long = {"status": "failed", "code": "c" * 1000}
    assert client.post(f"/_emulator/tasks/{task_id}/outcome", json=too_long).status_code == 400
    assert client.task(task_id)["status"] == "queued"


@pytest.mark.parametrize("field", ["code", "message"])
def test_an_empty_code_or_message_is_refused_not_made_the_default(
    client: Client, field: str
) -> None:
    task_id = client.submit_ok(NANO)
    url = f"/_emulator/tasks/{task_id}/outcome"
    response = client.post(url, json={"status": "failed", field: ""})
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field} must not be empty; leave it out")
    assert client.task(task_id)["status"] == "queued"
    # Left out or null: the defaults, as documented.
    assert client.post(url, json={"status": "failed", field: None}).status_code == 200
    error = client.task(task_id)["error"]
    assert error == {
        "code": "upstream_error",
        "message": "the upstream model failed (upstream_error)",
    }


def test_time_scale_of_1e308_is_refused_and_tasks_still_end(client: Client) -> None:
    response = client.patch("/_emulator/config", json={"time_scale": 1e308})
    assert response.status_code == 400
    assert "time_scale must be between 0 and 1000" in response.json()["message"]
    task = client.run_to_end(NANO)
    assert task["status"] == "succeeded"
    assert client.get("/_emulator/tasks").status_code == 200
    assert client.get("/_emulator/usage").json()["entries"][0]["state"] == "settled"


def test_fault_rules_are_capped(client: Client) -> None:
    rules = [{"effect": "empty", "match": {"prompt_contains": f"m{i}"}} for i in range(1000)]
    assert client.post("/_emulator/faults", json=rules).status_code == 201
    response = client.post("/_emulator/faults", json={"effect": "drop"})
    assert response.status_code == 400
    assert "at most 1000 fault rules" in response.json()["message"]


def test_patching_a_table_file_that_does_not_exist_is_a_400(client: Client) -> None:
    response = client.patch("/_emulator/config", json={"catalogue_file": "/nonexistent.toml"})
    assert response.status_code == 400
    assert "nonexistent.toml" in response.json()["message"]


def test_task_list_leaves_out_expired_tasks_instead_of_failing(make_client: Any) -> None:
    client = make_client(task_ttl_seconds=10)
    client.submit_ok({"model": "NanoBanana", "prompt": "old"})
    client.advance(100_000)  # expired, and no submission since, so not swept yet
    response = client.get("/_emulator/tasks")
    assert response.status_code == 200
    assert response.json()["tasks"] == []


def test_a_catalogue_the_prices_do_not_cover_is_refused_and_nothing_changes(
    client: Client, tmp_path: Any
) -> None:
    from pathlib import Path

    import emulator

    builtin = Path(emulator.__file__).parent / "data" / "catalogue.toml"
    extra = '\n[models.NanoBanana-Extra]\nfamily = "nano"\noutput_formats = ["png"]\n'
    extra += 'pixels = "nano_base"\ntier = "base"\n'
    catalogue = tmp_path / "catalogue.toml"
    catalogue.write_text(builtin.read_text() + extra)
    response = client.patch("/_emulator/config", json={"catalogue_file": str(catalogue)})
    assert response.status_code == 400
    assert "NanoBanana-Extra" in response.json()["message"]
    refused = client.submit({"model": "NanoBanana-Extra", "prompt": "x"})
    assert refused.status_code == 400
    assert client.get("/_emulator/config").json()["catalogue_file"] is None


def test_config_never_shows_keys_or_store_passwords(make_client: Any) -> None:
    client = make_client(api_keys=("sk-test-key", "sk-secret-second-key"))
    shown = client.get("/_emulator/config").json()
    assert "sk-secret-second-key" not in str(shown)
    assert all("…" in key for key in shown["api_keys"])


def test_store_urls_are_shown_without_their_password() -> None:
    from emulator.stores import masked_url

    assert masked_url("redis://user:hunter2@host:6379/0") == "redis://user:***@host:6379/0"
    assert masked_url("sqlite:///tmp/state.db") == "sqlite:///tmp/state.db"


#: A valid body of every control-plane route that takes one (or may be sent one), and the
#: misspelt field a caller might add to it.
WRITES: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("POST", "/_emulator/reset"): ({}, "keep"),
    ("PATCH", "/_emulator/config"): ({"failure_rate": 0.5}, "failure_rat"),
    ("POST", "/_emulator/clock/advance"): ({"seconds": 1}, "x"),
    ("POST", "/_emulator/tasks/{task_id}/outcome"): (
        {"status": "failed", "code": "content_policy_violation"},
        "cod",
    ),
    ("POST", "/_emulator/faults"): ({"effect": {"kind": "drop"}}, "foo"),
    ("DELETE", "/_emulator/faults"): ({}, "id"),
    ("DELETE", "/_emulator/faults/{rule_id}"): ({}, "x"),
    ("DELETE", "/_emulator/requests"): ({}, "task_id"),
    ("PUT", "/_emulator/balances/{key}"): ({"balance": 5}, "x"),
}


def test_every_control_plane_route_that_writes_is_covered_below() -> None:
    from emulator.http.admin import routes

    writes = {
        (method, route.path)
        for route in routes()
        for method in getattr(route, "methods", ()) or ()
        if method not in ("GET", "HEAD")
    }
    assert writes == set(WRITES)


def _state(client: Client) -> list[Any]:
    """Everything a control-plane write could change."""
    return [
        client.get(path).json()
        for path in (
            "/_emulator/config",
            "/_emulator/clock",
            "/_emulator/tasks",
            "/_emulator/faults",
            "/_emulator/requests",
            "/_emulator/balances",
        )
    ]


@pytest.mark.parametrize(("method", "route"), list(WRITES))
def test_a_misspelt_body_field_is_refused_by_name_and_changes_nothing(
    client: Client, method: str, route: str
) -> None:
    """As a fault rule's unknown field always was: a typo never reads as "not given"
    (``{"status": "failed", "cod": ...}`` used to fail the task with upstream_error)."""
    task_id = client.submit_ok(NANO)
    rule = {"id": "r1", "match": {"prompt_contains": "none"}, "effect": "drop"}
    assert client.post("/_emulator/faults", json=rule).status_code == 201
    path = route.format(task_id=task_id, rule_id="r1", key="sk-other")
    body, typo = WRITES[(method, route)]
    before = _state(client)
    refused = client.request(method, path, json=body | {typo: 1})
    assert refused.status_code == 400, refused.text
    message = refused.json()["message"]
    assert repr(typo) in message, message
    if route != "/_emulator/config":  # PATCH keeps its own words: "unknown setting 'x'"
        assert f"has unknown field(s): {typo!r}" in message, message
    assert _state(client) == before
    assert client.request(method, path, json=body).status_code in (200, 201, 204)
