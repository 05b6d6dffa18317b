"""The control plane never answers a question it was not asked: a query parameter a route does
not take is a 400 naming it and listing those it takes, never a silent "everything"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from emulator.contract import load_contract

from .conftest import Client, client_on_store
from .redis_server import RedisServer, running_redis

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    """A client of an emulator on each of the three stores, with its lifespan."""
    with client_on_store(request.param, request, tmp_path) as client:
        yield client


def _refusal(response: Any) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_request" and body["data"] is None
    message: str = body["message"]
    return message


def _journal(client: Client) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = client.get("/_emulator/requests").json()["requests"]
    return entries


# -- DELETE /_emulator/requests -------------------------------------------------------------
@pytest.mark.parametrize("params", [{"model": "x"}, {"endpoint": "submit"}, {"body[model]": "x"}])
def test_clearing_the_journal_with_a_filter_is_refused_and_clears_nothing(
    any_store: Client, params: dict[str, str]
) -> None:
    client = any_store
    client.submit_ok(NANO)
    client.submit({"model": "nope", "prompt": "x"})
    name = next(iter(params))
    message = _refusal(client.delete("/_emulator/requests", params=params))
    assert repr(name) in message and "clears the whole journal" in message
    assert len(_journal(client)) == 2


def test_clearing_the_journal_without_parameters_clears_it(any_store: Client) -> None:
    any_store.submit_ok(NANO)
    assert any_store.delete("/_emulator/requests").status_code == 204
    assert _journal(any_store) == []


# -- unknown parameters everywhere ----------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "known"),
    [
        ("GET", "/_emulator/tasks", ["status", "model"]),
        ("GET", "/_emulator/usage", ["key", "model", "state", "task_id"]),
        ("GET", "/_emulator/requests", ["path", "method", "task_id", "body[<field>]"]),
        ("HEAD", "/_emulator/tasks", []),
        ("GET", "/_emulator/config", []),
        ("GET", "/_emulator/clock", []),
        ("GET", "/_emulator/faults", []),
        ("GET", "/_emulator/balances", []),
        ("DELETE", "/_emulator/faults", []),
        ("POST", "/_emulator/reset", []),
    ],
)
def test_an_unknown_query_parameter_is_refused_naming_it_and_the_known_ones(
    client: Client, method: str, path: str, known: list[str]
) -> None:
    client.submit_ok(NANO)
    response = client.request(method, path, params={"statu": "queued"})
    assert response.status_code == 400, response.text
    if method == "HEAD":
        return  # no body; the GET says why
    message = _refusal(response)
    assert "'statu'" in message
    for name in known:
        assert name in message
    if not known:
        assert "takes no query parameters" in message
    assert client.get("/_emulator/tasks").json()["tasks"]  # nothing was reset or cleared


def test_a_misspelt_task_filter_no_longer_lists_every_task(client: Client) -> None:
    client.submit_ok(NANO)
    assert "'modle'" in _refusal(client.get("/_emulator/tasks", params={"modle": "gpt-image-2"}))


def test_a_misspelt_usage_filter_no_longer_lists_every_charge(client: Client) -> None:
    client.submit_ok(NANO)
    assert "'task'" in _refusal(client.get("/_emulator/usage", params={"task": "task_x"}))


@pytest.mark.parametrize(
    ("path", "params", "needles"),
    [
        ("/_emulator/tasks", {"status": "succeded"}, ["status", "queued", "succeeded"]),
        ("/_emulator/tasks", {"status": ""}, ["status", "failed"]),
        ("/_emulator/usage", {"state": "paid"}, ["state", "held", "settled", "released"]),
        ("/_emulator/tasks", [("model", "a"), ("model", "b")], ["'model'", "once"]),
        ("/_emulator/usage", [("key", "a"), ("key", "b")], ["'key'", "once"]),
        # As the dashboard's filter refuses it: an empty list would read as "no such task".
        ("/_emulator/tasks", {"model": "Nope"}, ["model must be one of", "NanoBanana", "'Nope'"]),
        ("/_emulator/usage", {"model": "Nope"}, ["model must be one of", "gpt-image-2"]),
        ("/_emulator/usage", {"model": ""}, ["model must be one of"]),
    ],
)
def test_a_filter_value_that_could_never_match_is_refused(
    client: Client, path: str, params: Any, needles: list[str]
) -> None:
    message = _refusal(client.get(path, params=params))
    for needle in needles:
        assert needle in message


def test_known_filters_still_filter(client: Client) -> None:
    first = client.submit_ok(NANO)
    client.submit_ok(NANO)
    client.post(f"/_emulator/tasks/{first}/outcome", json={"status": "failed"})
    failed = client.get("/_emulator/tasks", params={"status": "failed"}).json()["tasks"]
    assert [v["task"]["task_id"] for v in failed] == [first]
    released = client.get("/_emulator/usage", params={"state": "released"}).json()["entries"]
    assert [e["task_id"] for e in released] == [first]
    nano = client.get("/_emulator/tasks", params={"model": NANO["model"]}).json()["tasks"]
    assert len(nano) == 2
    assert client.get("/_emulator/usage", params={"model": "gpt-image-2"}).json()["entries"] == []


# -- usage entries in the emulator's contract -----------------------------------------------
def _usage_validator() -> Any:
    contract = load_contract("emulator")
    operation = contract["paths"]["/_emulator/usage"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator({**schema, "components": contract["components"]})


def test_usage_answers_match_the_contract_with_taken_and_refunded(client: Client) -> None:
    client.put("/_emulator/balances/sk-test-key", json={"balance": 1000})
    first = client.submit_ok(NANO)
    client.submit_ok(NANO)
    client.post(f"/_emulator/tasks/{first}/outcome", json={"status": "failed"})
    usage = client.get("/_emulator/usage").json()
    assert {e["state"] for e in usage["entries"]} == {"held", "released"}
    _usage_validator().validate(usage)


@pytest.mark.parametrize("member", ["taken", "refunded", "state", "amount"])
def test_the_contract_refuses_a_usage_entry_without_a_member(client: Client, member: str) -> None:
    # What schemathesis' response_schema_conformance checks: a service that left the member
    # out would fail it.
    client.submit_ok(NANO)
    usage = client.get("/_emulator/usage").json()
    del usage["entries"][0][member]
    assert not _usage_validator().is_valid(usage)


@pytest.mark.parametrize("member", ["taken", "refunded", "paid", "held"])
def test_the_contract_refuses_totals_without_a_member(client: Client, member: str) -> None:
    client.submit_ok(NANO)
    usage = client.get("/_emulator/usage").json()
    del usage["totals"][member]
    assert not _usage_validator().is_valid(usage)
