"""Effect ``respond``: a rule answers matching requests with any final status, a JSON value or
a text body and headers (WireMock's stubs, respx's routes), on every route and every store;
every part is bounded at the door, whichever way the rule comes in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Settings, create_app
from emulator.config import ConfigError
from emulator.core.fault_parsing import FaultError, parse_rule

from .conftest import AUTH, Client
from .redis_server import RedisServer, running_redis

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


def add(client: Client, rule: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/_emulator/faults", json=rule)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()["faults"][0]
    return created


@pytest.mark.parametrize("status", [401, 403, 418, 422, 507])
def test_a_rule_answers_a_submission_with_any_status_and_json(client: Client, status: int) -> None:
    body = {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}
    add(
        client,
        {
            "match": {"endpoint": "submit", "model": "NanoBanana2-0.5K"},
            "effect": {
                "kind": "respond",
                "status": status,
                "json": body,
                "headers": {"X-Req": "7"},
            },
            "times": 1,
        },
    )
    first = client.submit(NANO)
    assert (first.status_code, first.json(), first.headers["x-req"]) == (status, body, "7")
    assert first.headers["content-type"] == "application/json"
    assert client.get("/_emulator/tasks").json()["tasks"] == []  # the rule answered: no task
    assert client.submit(NANO).status_code == 200  # times = 1


def test_a_raw_body_keeps_its_own_content_type(client: Client) -> None:
    headers = {"Content-Type": "text/html", "Retry-After": "30"}
    add(
        client,
        {
            "effect": {
                "kind": "respond",
                "status": 502,
                "body": "<h1>Bad gateway</h1>",
                "headers": headers,
            }
        },
    )
    response = client.submit(NANO)
    assert response.status_code == 502 and response.text == "<h1>Bad gateway</h1>"
    assert response.headers["content-type"] == "text/html"
    assert response.headers["retry-after"] == "30"
    assert response.headers.get_list("content-type") == ["text/html"]


def test_a_text_body_defaults_to_plain_text_and_no_body_to_none(client: Client) -> None:
    add(client, {"effect": {"kind": "respond", "status": 500, "body": "oops ✨"}, "times": 1})
    add(client, {"effect": {"kind": "respond", "status": 204}, "times": 1})
    text = client.submit(NANO)
    assert (text.status_code, text.text) == (500, "oops ✨")
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    empty = client.submit(NANO)
    assert (empty.status_code, empty.content) == (204, b"")
    assert "content-type" not in empty.headers


def test_a_rule_answers_polls_of_known_and_unknown_tasks(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    stub = {"code": "success", "message": "", "data": {"task_id": "x", "status": "processing"}}
    add(
        client,
        {"match": {"endpoint": "poll"}, "effect": {"kind": "respond", "status": 200, "json": stub}},
    )
    assert client.get(f"/v1/images/tasks/{task_id}").json() == stub
    assert client.get("/v1/images/tasks/task_" + "f" * 32).json() == stub


def test_a_rule_answers_the_result_route(client: Client) -> None:
    task = client.run_to_end(NANO)
    add(
        client,
        {
            "match": {"endpoint": "result"},
            "effect": {"kind": "respond", "status": 403, "body": "AccessDenied"},
        },
    )
    response = client.get(task["result_url"])
    assert (response.status_code, response.text) == (403, "AccessDenied")


def test_the_journal_records_that_a_rule_answered(client: Client) -> None:
    add(client, {"id": "stub", "effect": {"kind": "respond", "status": 418, "json": {"t": 1}}})
    client.submit(NANO)
    entry = client.get("/_emulator/requests", params={"fault": "stub"}).json()["requests"][-1]
    assert (entry["status"], entry["fault"], entry["endpoint"]) == (418, "stub", "submit")


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
def test_respond_rules_round_trip_through_every_store(
    tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    url = {"memory": "memory", "sqlite": f"sqlite://{tmp_path}/state.db"}.get(store)
    if url is None:
        url = request.getfixturevalue("redis_server").url
    settings = Settings(seed=1, clock="manual", store=url, store_prefix=f"r-{tmp_path.name}")
    value = {"nested": [1, 2.5, None, True, "ü"], "empty": {}}
    rule = {"effect": {"kind": "respond", "status": 299, "json": value, "headers": {"X-A": "b"}}}
    # Entered: a Redis pool belongs to the loop the client runs the app on.
    with Client(create_app(settings), headers=AUTH) as client:
        add(client, rule)
        listed = client.get("/_emulator/faults").json()["faults"][0]["effect"]
        assert (listed["json"], listed["headers"], listed["status"]) == (value, {"X-A": "b"}, 299)
        response = client.submit(NANO)
        assert (response.status_code, response.json()) == (299, value)
        assert response.headers["x-a"] == "b"


def test_a_fault_file_and_the_config_can_hold_respond_rules(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(
        '[[faults]]\neffect = {kind = "respond", status = 401, json = {error = "nope"}}\n'
    )
    with Client(
        create_app(Settings(seed=1, clock="manual", fault_file=str(path))), headers=AUTH
    ) as client:
        response = client.submit(NANO)
        assert (response.status_code, response.json()) == (401, {"error": "nope"})


def test_a_rule_given_later_changes_do_not_reach_the_installed_rule(client: Client) -> None:
    value: dict[str, Any] = {"a": 1}
    rule = parse_rule({"effect": {"kind": "respond", "status": 200, "json": value}}, "r")
    value["a"] = 2
    assert rule.effect.json == {"a": 1}


BAD = [
    ({"kind": "respond"}, "status is required"),
    ({"kind": "respond", "status": 100}, "status must be between 200 and 599"),
    ({"kind": "respond", "status": 600}, "status must be between 200 and 599"),
    ({"kind": "respond", "status": "404"}, "status is required"),
    ({"kind": "respond", "status": 404.5}, "status is required"),
    ({"kind": "respond", "status": 200, "json": {}, "body": ""}, "json and fault.effect.body"),
    ({"kind": "respond", "status": 204, "body": "x"}, "204 carries no body"),
    ({"kind": "respond", "status": 304, "json": {"a": 1}}, "304 carries no body"),
    ({"kind": "respond", "status": 200, "headers": {"Content-Length": "5"}}, "'Content-Length'"),
    ({"kind": "respond", "status": 200, "headers": {"transfer-encoding": "x"}}, "'transfer-enc"),
    ({"kind": "respond", "status": 200, "headers": {"Connection": "close"}}, "'Connection'"),
    ({"kind": "respond", "status": 200, "headers": {"X-A": "a\r\nX-B: b"}}, "no CR, LF"),
    ({"kind": "respond", "status": 200, "headers": {"X A": "a"}}, "not an HTTP header name"),
    ({"kind": "respond", "status": 200, "headers": {"X-T": "abc "}}, "at its start or end"),
    ({"kind": "respond", "status": 200, "headers": {"X-T": "\tabc"}}, "at its start or end"),
    ({"kind": "respond", "status": 200, "headers": {"X-A": 1}}, "string values"),
    # Header names are case-insensitive: these were sent as two fields each.
    ({"kind": "respond", "status": 200, "headers": {"X-A": "1", "x-a": "2"}}, "'x-a' and 'X-A'"),
    (
        {
            "kind": "respond",
            "status": 200,
            "headers": {"Content-Type": "text/html", "content-type": "application/xml"},
        },
        "headers: 'content-type' and 'Content-Type' are the same header",
    ),
    (
        {"kind": "respond", "status": 200, "headers": {f"X-{i}": "v" for i in range(33)}},
        "at most 32",
    ),
    ({"kind": "respond", "status": 200, "retry_after": 3}, "retry_after does not apply"),
    ({"kind": "http_error", "status": 503, "body": "x"}, "body does not apply to kind http_error"),
    ({"kind": "drop", "headers": {"X-A": "b"}}, "headers is for kind respond"),
]


@pytest.mark.parametrize(("effect", "needle"), BAD)
def test_bad_respond_effects_are_refused_naming_the_field(
    client: Client, effect: dict[str, Any], needle: str
) -> None:
    response = client.post("/_emulator/faults", json={"effect": effect})
    assert response.status_code == 400, response.text
    assert needle in response.json()["message"]
    with pytest.raises(FaultError, match=needle.replace("(", r"\(")):
        parse_rule({"effect": effect}, "r", "fault")
    assert client.get("/_emulator/faults").json()["faults"] == []


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (float("nan"), "not a JSON value"),
        ({1, 2}, "not a JSON value"),
        ("\ud800", "lone surrogate"),
        (json.loads("[" * 70 + "]" * 70), "deeper than the limit of 64"),
        (["x" * (1024 * 1024)], "larger than the limit of 1048576 bytes as JSON"),
    ],
)
def test_json_bodies_python_callers_give_are_checked(value: Any, needle: str) -> None:
    # Over HTTP the control plane's body cap (1 MiB) and JSON parser refuse these first.
    with pytest.raises(FaultError, match=needle):
        parse_rule({"effect": {"kind": "respond", "status": 200, "json": value}}, "r")


def test_a_text_body_beyond_the_cap_is_refused() -> None:
    effect = {"kind": "respond", "status": 200, "body": "é" * (512 * 1024 + 1)}
    with pytest.raises(FaultError, match="body is larger than the limit of 1048576 bytes"):
        parse_rule({"effect": effect}, "r")


def test_a_bad_respond_rule_in_a_fault_file_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"effect": {"kind": "respond", "status": 101}}]))
    with pytest.raises(ConfigError, match=r"faults\[0\]\.effect\.status must be between 200"):
        create_app(Settings(fault_file=str(path)))
