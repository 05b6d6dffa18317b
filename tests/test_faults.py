"""Fault rules and timing, through the HTTP API on the manual clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulator.config import ConfigError, build_settings, load_fault_file
from emulator.core.fault_parsing import FaultError, parse_rule

from .conftest import Client

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}
GPT = {"model": "gpt-image-2", "prompt": "a dog", "size": "1024x1024", "n": 4}


def add(client: Client, rule: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/_emulator/faults", json=rule)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()["faults"][0]
    return created


def hits(client: Client, rule_id: str) -> int:
    rules = client.get("/_emulator/faults").json()["faults"]
    return int(next(r["hits"] for r in rules if r["id"] == rule_id))


def test_fail_task_rule_fails_the_task_with_its_code(client: Client) -> None:
    add(
        client,
        {
            "match": {"prompt_contains": "forbidden"},
            "effect": {"kind": "fail_task", "code": "content_policy_violation", "message": "nope"},
        },
    )
    ok = client.run_to_end(NANO)
    bad = client.run_to_end(NANO | {"prompt": "a forbidden thing"})
    assert ok["status"] == "succeeded"
    assert bad["status"] == "failed" and bad["progress"] == "100%"
    assert bad["error"] == {"code": "content_policy_violation", "message": "nope"}
    assert bad["result_url"] is None and bad["metadata"]["result_count"] == 0


def test_fail_task_while_queued_never_shows_processing(client: Client) -> None:
    add(client, {"effect": {"kind": "fail_task", "code": "upstream_timeout"}})
    task_id = client.submit_ok(NANO)
    seen = set()
    for _ in range(100):
        seen.add(client.task(task_id)["status"])
        client.advance(0.2)
    assert seen == {"queued", "failed"}


def test_fail_task_at_a_progress_value(client: Client) -> None:
    add(client, {"effect": {"kind": "fail_task", "at_progress": 50}})
    task_id = client.submit_ok(NANO)
    progress = []
    for _ in range(400):
        task = client.task(task_id)
        if task["status"] == "failed":
            break
        progress.append(int(task["progress"].rstrip("%")))
        client.advance(0.1)
    assert task["status"] == "failed"
    assert max(progress) in range(45, 50)


def test_partial_result_returns_fewer_images(client: Client) -> None:
    add(client, {"match": {"model": "gpt-image-2"}, "effect": {"kind": "partial", "images": 2}})
    task = client.run_to_end(GPT)
    assert task["metadata"]["result_count"] == 2
    assert len(task["metadata"]["result_urls"]) == 2


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_http_error_on_submit_creates_no_task(client: Client, status: int) -> None:
    add(
        client,
        {"match": {"endpoint": "submit"}, "effect": {"kind": "http_error", "status": status}},
    )
    response = client.submit(NANO)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"code", "message", "data"} and body["data"] is None
    if status == 429:
        assert response.headers["retry-after"] == "1"
        assert body["code"] == "rate_limited"
    assert client.get("/_emulator/tasks").json()["tasks"] == []


def test_http_error_on_poll_leaves_the_task_alone(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    add(
        client,
        {
            "match": {"endpoint": "poll"},
            "effect": {"kind": "http_error", "status": 429, "retry_after": 7},
            "times": 1,
        },
    )
    first = client.get(f"/v1/images/tasks/{task_id}")
    assert (first.status_code, first.headers["retry-after"]) == (429, "7")
    assert client.task(task_id)["status"] == "queued"


def test_times_expires_a_rule(client: Client) -> None:
    rule = add(client, {"effect": {"kind": "http_error", "status": 503}, "times": 2})
    statuses = [client.submit(NANO).status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert hits(client, rule["id"]) == 2


def test_first_matching_rule_wins(client: Client) -> None:
    add(
        client, {"match": {"model": "gpt-image-2"}, "effect": {"kind": "http_error", "status": 502}}
    )
    add(client, {"effect": {"kind": "http_error", "status": 504}})
    assert client.submit(GPT).status_code == 502
    assert client.submit(NANO).status_code == 504


@pytest.mark.parametrize(
    ("match", "hit"),
    [
        ({"api_key": "sk-test-key"}, True),
        ({"api_key": "sk-other"}, False),
        ({"headers": {"X-Tenant": "blue"}}, True),
        ({"headers": {"X-Tenant": "red"}}, False),
        ({"task_type": "text2image"}, True),
        ({"task_type": "image2image"}, False),
        ({"endpoint": "poll"}, False),
    ],
)
def test_rules_match_on_key_header_task_type_and_endpoint(
    client: Client, match: dict[str, Any], hit: bool
) -> None:
    add(client, {"match": match, "effect": {"kind": "http_error", "status": 500}})
    response = client.submit(NANO, headers={"X-Tenant": "blue"})
    assert response.status_code == (500 if hit else 200)


def test_probability_is_deterministic_under_the_seed(make_client: Any) -> None:
    def run(seed: int) -> list[int]:
        client = make_client(seed=seed)
        add(client, {"effect": {"kind": "http_error", "status": 500}, "probability": 0.5})
        return [client.submit(NANO).status_code for _ in range(40)]

    first, again, other = run(5), run(5), run(6)
    assert first == again
    assert first != other
    assert 8 < first.count(500) < 32


def test_failure_rate_fails_that_share_of_tasks(make_client: Any) -> None:
    client = make_client(failure_rate=0.3, seed=11)
    ids = [client.submit_ok(NANO) for _ in range(100)]
    client.advance(10_000)
    failed = [t for t in (client.task(i) for i in ids) if t["status"] == "failed"]
    assert 15 <= len(failed) <= 45
    assert {t["error"]["code"] for t in failed} == {"upstream_error"}


def test_malformed_and_empty_bodies_in_process(client: Client) -> None:
    add(client, {"effect": "malformed", "times": 1})
    add(client, {"effect": "empty", "times": 1})
    malformed = client.submit(NANO)
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        malformed.json()
    empty = client.submit(NANO)
    assert empty.content == b""
    # The work was done: both tasks exist although their answers were lost.
    assert len(client.get("/_emulator/tasks").json()["tasks"]) == 2


def test_latency_rule_and_setting_are_accepted(make_client: Any) -> None:
    client = make_client(submit_latency=0.001)
    add(client, {"effect": {"kind": "latency", "seconds": 0.001}})
    assert client.submit(NANO).status_code == 200
    entry = client.get("/_emulator/requests").json()["requests"][-1]
    assert entry["fault"] == "rule-1"
    assert entry["duration_ms"] >= 2


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"effect": {"kind": "explode"}}, "kind must be one of"),
        ({"effect": {"kind": "http_error", "status": 418}}, "status must be one of"),
        ({"effect": {"kind": "partial"}}, "images is required"),
        ({"effect": {"kind": "partial", "images": 0}}, "images must be between 1 and 100"),
        ({"effect": "drop", "probability": 2}, "probability must be between 0 and 1"),
        ({"effect": "drop", "times": 0}, "times must be between 1 and 1000000000"),
        ({"effect": "drop", "times": 1e20}, "times must be between 1 and 1000000000"),
        ({"effect": {"kind": "latency", "seconds": 1e308}}, "seconds must be between 0 and 3600"),
        (
            {"effect": {"kind": "empty", "seconds": 1}},
            "effect.seconds does not apply to kind empty (it takes no other field)",
        ),
        ({"effect": {"kind": "http_error", "status": 429, "retry_after": 10**9}}, "retry_after"),
        ({"effect": "drop", "match": {"headers": {"X-\u0416": "v"}}}, "not an HTTP header name"),
        (
            {"effect": "drop", "match": {"headers": {"X-A": "1", "x-a": "2"}}},
            "match.headers: 'x-a' and 'X-A' are the same header",
        ),
        ({"effect": "drop", "match": {"endpoint": "everywhere"}}, "endpoint must be one of"),
        ({"effect": "drop", "colour": "red"}, "unknown field(s): 'colour'"),
        ({}, "effect is required"),
        ({"effect": {"kind": "fail_task", "code": ""}}, "effect.code must not be empty"),
        (
            {"effect": {"kind": "http_error", "status": 503, "message": ""}},
            "effect.message must not be empty",
        ),
    ],
)
def test_bad_rules_are_rejected_naming_the_field(
    client: Client, rule: dict[str, Any], needle: str
) -> None:
    response = client.post("/_emulator/faults", json=rule)
    assert response.status_code == 400
    assert needle in response.json()["message"]
    with pytest.raises(FaultError, match=needle.split("(")[0]):
        parse_rule(rule, "r")


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        (
            {"effect": {"kind": "latency", "seconds": float("nan")}},
            "seconds must be a finite number",
        ),
        ({"effect": {"kind": "hang", "seconds": float("inf")}}, "seconds must be a finite number"),
        ({"effect": "drop", "probability": float("nan")}, "probability must be a finite number"),
        ({"effect": "drop", "id": "\ud800"}, "id is not valid Unicode"),
        ({"effect": {"kind": "fail_task", "message": "\udfff"}}, "message is not valid Unicode"),
        ({"effect": "drop", "match": {"model": "x" * 300}}, "model is longer than the limit"),
    ],
)
def test_values_json_cannot_carry_are_refused_too(rule: dict[str, Any], needle: str) -> None:
    # NaN, infinities and lone surrogates reach parse_rule from TOML files and Python callers;
    # over HTTP the body parser refuses them first (tests/test_hostile.py).
    with pytest.raises(FaultError, match=needle):
        parse_rule(rule, "r")


def test_fault_file_with_nan_or_huge_times_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text('[[faults]]\neffect = {kind = "latency", seconds = nan}\n')
    with pytest.raises(ConfigError, match="seconds must be a finite number"):
        load_fault_file(path)
    path.write_text('[[faults]]\neffect = "drop"\ntimes = 1e20\n')
    with pytest.raises(ConfigError, match="times must be between 1 and"):
        load_fault_file(path)


def test_rules_load_from_config_and_fault_file(tmp_path: Path, make_client: Any) -> None:
    toml = tmp_path / "faults.toml"
    toml.write_text('[[faults]]\nid = "slow"\neffect = {kind = "http_error", status = 503}\n')
    assert [r.id for r in load_fault_file(toml)] == ["slow"]
    client = make_client(fault_file=str(toml))
    assert client.submit(NANO).status_code == 503
    cfg = tmp_path / "emulator.toml"
    cfg.write_text('[[faults]]\neffect = {kind = "teleport"}\n')
    with pytest.raises(ConfigError, match=r"faults\[0\]\.effect\.kind"):
        build_settings(config_file=cfg)


def test_reset_restores_configured_faults_and_clears_the_rest(make_client: Any) -> None:
    client = make_client(faults=[{"id": "cfg", "effect": {"kind": "http_error", "status": 500}}])
    add(client, {"effect": "drop"})
    assert [r["id"] for r in client.get("/_emulator/faults").json()["faults"]] == ["cfg", "rule-2"]
    assert client.post("/_emulator/reset").status_code == 200
    assert [r["id"] for r in client.get("/_emulator/faults").json()["faults"]] == ["cfg"]


def test_whole_number_floats_count_as_integers_in_rules() -> None:
    rule = parse_rule({"effect": {"kind": "http_error", "status": 503.0}, "times": 3.0}, "rule-1")
    assert (rule.times, rule.effect.status) == (3, 503)
    assert isinstance(rule.times, int)


@pytest.mark.parametrize("headers", [False, 0, "", []])
def test_match_headers_must_be_an_object(headers: object) -> None:
    with pytest.raises(FaultError, match="headers must map header names"):
        parse_rule({"effect": "drop", "match": {"headers": headers}}, "rule-1")


def test_fractional_times_is_refused() -> None:
    with pytest.raises(FaultError, match="times has the wrong type"):
        parse_rule({"effect": "drop", "times": 2.5}, "rule-1")


def test_times_of_1e20_is_refused_on_sqlite_and_polls_keep_working(
    make_client: Any, tmp_path: Path
) -> None:
    client = make_client(store=f"sqlite://{tmp_path}/state.db")
    task_id = client.submit_ok(NANO)
    for times in (1e20, 10**20):
        rule = {"match": {"endpoint": "poll"}, "effect": "empty", "times": times}
        response = client.post("/_emulator/faults", json=rule)
        assert response.status_code == 400
        assert "times must be between 1 and 1000000000" in response.json()["message"]
    assert client.get(f"/v1/images/tasks/{task_id}").status_code == 200
    assert client.get("/_emulator/faults").json()["faults"] == []
