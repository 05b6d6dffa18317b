"""The journal's filters on the control plane: known ones only, body fields explicitly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.contract import load_contract

from .conftest import Client, client_on_store
from .redis_server import RedisServer, running_redis

NANO = {"model": "NanoBanana", "prompt": "a cube"}


def journal(client: Client, params: Any) -> list[dict[str, Any]]:
    response = client.get("/_emulator/requests", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


def refusal(client: Client, params: Any) -> str:
    response = client.get("/_emulator/requests", params=params)
    assert response.status_code == 400, response.text
    message: str = response.json()["message"]
    return message


def test_unknown_filter_is_refused_naming_it_and_the_known_ones(client: Client) -> None:
    client.submit_ok(NANO)
    message = refusal(client, {"bogus": "1"})
    assert "'bogus'" in message
    for name in ("path", "method", "task_id", "endpoint", "status", "fault", "body[<field>]"):
        assert name in message


def test_a_body_field_is_not_a_filter_unless_asked_for_as_one(client: Client) -> None:
    client.submit_ok(NANO)
    assert "'model'" in refusal(client, {"model": "X"})


def test_body_fields_filter_with_the_deep_object_form(client: Client) -> None:
    client.submit_ok(NANO)
    client.submit_ok(NANO | {"model": "NanoBanana2-0.5K", "n": 2})
    assert len(journal(client, {"body[model]": "NanoBanana"})) == 1
    assert journal(client, {"body[model]": "X"}) == []
    # Numbers match their JSON text, whether the client sent JSON or a form field.
    [two] = journal(client, {"body[n]": "2", "body[model]": "NanoBanana2-0.5K"})
    assert two["body"]["fields"]["n"] == 2
    assert journal(client, {"body[n]": "3"}) == []
    # A request without a body (a poll) never matches a body filter.
    assert journal(client, {"body[model]": "NanoBanana", "endpoint": "poll"}) == []


def test_a_list_field_matches_its_json_text_however_long(client: Client) -> None:
    # Each URL is kept whole (under 200 characters), so the list is too: its JSON text, longer
    # than 200 characters, is a filter that can match, not one refused as "can never match".
    urls = [f"https://example.com/{i}/" + "p" * 90 + ".png" for i in range(3)]
    client.submit_ok(NANO | {"images": urls})
    client.submit_ok(NANO | {"images": urls[:1]})
    text = json.dumps(urls, separators=(",", ":"))
    assert len(text) > 200
    [entry] = journal(client, {"body[images]": text})
    assert entry["body"]["fields"]["images"] == urls
    # Not the compact JSON the journal compares with: it could never match, so it is refused.
    assert "'body[images]'" in refusal(client, {"body[images]": json.dumps(urls)})


def test_status_and_fault_filters(client: Client) -> None:
    client.post(
        "/_emulator/faults",
        json={"id": "limit", "effect": {"kind": "http_error", "status": 500}, "times": 1},
    )
    assert client.submit(NANO).status_code == 500
    client.submit_ok(NANO)
    client.submit({"model": "nope", "prompt": "x"})
    assert [e["status"] for e in journal(client, {"status": "500"})] == [500]
    assert [e["status"] for e in journal(client, {"fault": "limit"})] == [500]
    assert len(journal(client, {"status": "200", "endpoint": "submit"})) == 1


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"status": "abc"}, ["'status'", "integer"]),
        ({"status": "1000"}, ["'status'", "0"]),
        ({"endpoint": "submitt"}, ["'endpoint'", "submit", "poll", "result"]),
        ([("path", "/a"), ("path", "/b")], ["'path'", "once"]),
        ({"body[]": "x"}, ["'body[]'", "field"]),
        ({"body[prompt]": "p" * 201}, ["'body[prompt]'", "200"]),
        ({"body[image]": "data:image/png;base64,AAAA"}, ["'body[image]'", "data:"]),
        ({"body[images]": json.dumps(["p" * 201])}, ["'body[images]'", "200"]),
        ({"body[images]": "[" * 20_000}, ["'body[images]'", "200"]),
        ({"method": "G E T"}, ["'method'"]),
    ],
)
def test_bad_filter_values_are_refused_naming_the_rule(
    client: Client, params: Any, names: list[str]
) -> None:
    message = refusal(client, params)
    for name in names:
        assert name in message


def test_a_refused_query_leaves_the_journal_as_it_was(client: Client) -> None:
    client.submit_ok(NANO)
    refusal(client, {"bogus": "1"})
    assert len(journal(client, {})) == 1


def test_the_emulator_contract_states_exactly_the_known_filters_and_page_parameters() -> None:
    contract = load_contract("emulator")
    operation = contract["paths"]["/_emulator/requests"]["get"]
    refs = contract["components"]["parameters"]
    declared = [
        refs[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p for p in operation["parameters"]
    ]
    parameters = {p["name"]: p for p in declared}
    assert set(parameters) == {
        "path", "method", "task_id", "endpoint", "status", "fault", "body", "limit", "after"
    }  # fmt: skip
    assert parameters["body"]["style"] == "deepObject"


# -- D-13: unknown fields are ignored and listed ----------------------------------------------
def _last_submission(client: Client) -> dict[str, Any]:
    return journal(client, {"endpoint": "submit"})[-1]


def test_a_misspelt_field_is_ignored_and_listed_in_the_journal(client: Client) -> None:
    client.submit_ok(NANO | {"sise": "1024x1024", "user": "me"})
    entry = _last_submission(client)
    assert entry["unknown_fields"] == ["sise", "user"]
    assert entry["unknown_fields_more"] == 0
    assert entry["body"]["fields"]["sise"] == "1024x1024"


def test_a_submission_without_unknown_fields_lists_none(client: Client) -> None:
    client.submit_ok(NANO | {"n": 1, "quality": "x", "task_type": "text2image"})
    entry = _last_submission(client)
    assert entry["unknown_fields"] == [] and entry["unknown_fields_more"] == 0


def test_unknown_fields_of_a_refused_submission_are_listed_too(client: Client) -> None:
    # The misspelling is why gpt-image-2 says "size is required": the journal shows it.
    response = client.submit({"model": "gpt-image-2", "prompt": "x", "sise": "1024x1024"})
    assert response.status_code == 400
    assert _last_submission(client)["unknown_fields"] == ["sise"]


def test_unknown_form_fields_are_listed_once_however_often_sent(client: Client) -> None:
    parts = [("model", (None, "NanoBanana")), ("prompt", (None, "a")), ("sise", (None, "1"))]
    parts += [("sise", (None, "2")), ("style", (None, "vivid"))]
    response = client.post("/v1/images/tasks", files=parts)
    assert response.status_code == 200, response.text
    assert _last_submission(client)["unknown_fields"] == ["sise", "style"]


def test_ten_thousand_unknown_fields_leave_a_bounded_entry(make_client: Any) -> None:
    client = make_client(max_json_items=30_000)
    body = {f"field_{i:05}": i for i in range(10_000)} | NANO
    client.submit_ok(body)
    entry = _last_submission(client)
    assert entry["unknown_fields"] == [f"field_{i:05}" for i in range(20)]
    assert entry["unknown_fields_more"] == 10_000 - 20
    # The known fields are kept although they came after the unknown ones.
    assert entry["body"]["fields"]["model"] == "NanoBanana"
    assert journal(client, {"body[model]": "NanoBanana"}) == [entry]
    assert len(json.dumps(entry)) < 10_000


def test_long_unknown_field_names_are_cut_in_the_list(client: Client) -> None:
    client.submit_ok(NANO | {"x" * 5000: 1})
    [name] = _last_submission(client)["unknown_fields"]
    assert name == "x" * 200 + "…"


def test_polls_list_no_unknown_fields(client: Client) -> None:
    client.task(client.submit_ok(NANO))
    [poll] = journal(client, {"endpoint": "poll"})
    assert "unknown_fields" not in poll


def test_an_entry_reads_the_same_however_often_and_late_it_is_read(client: Client) -> None:
    # The memory store builds entries when the journal is first read (emulator/http/journal.py):
    # what a later read shows must be what the first showed, and numbering stays arrival order.
    task_id = client.submit_ok({**NANO, "bogus": 1})
    client.get(f"/v1/images/tasks/{task_id}")
    first = journal(client, {})
    client.submit_ok(NANO)
    second = journal(client, {})
    assert second[:2] == first
    assert [e["seq"] for e in second] == [1, 2, 3]
    assert first[0]["body"] == {"fields": {**NANO, "bogus": 1}} and first[0]["unknown_fields"] == [
        "bogus"
    ]
    assert first[1]["endpoint"] == "poll" and first[1]["task_id"] == task_id


# -- a lowered journal_limit ----------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    """A client of an emulator on each store, journal_limit 100, with its lifespan."""
    with client_on_store(request.param, request, tmp_path, journal_limit=100) as client:
        yield client


@pytest.mark.parametrize("lowered", [10, 0])
def test_a_lowered_journal_limit_keeps_that_many_from_the_next_request_on(
    any_store: Client, lowered: int
) -> None:
    """One rule for 10 and 0: the next request keeps the newest ``journal_limit`` (0 used to
    stop recording and keep the 99 old entries listed for ever)."""
    client = any_store
    for i in range(99):
        client.get(f"/v1/images/tasks/task_{i:032x}")
    assert len(journal(client, {})) == 99
    response = client.patch("/_emulator/config", json={"journal_limit": lowered})
    assert response.status_code == 200, response.text
    client.submit_ok(NANO)  # the next request
    kept = journal(client, {})
    assert [e["seq"] for e in kept] == list(range(101 - lowered, 101))[:lowered]
    client.submit_ok(NANO)
    assert len(journal(client, {})) == lowered
    # Raised again, the journal starts from what it kept: nothing dropped comes back.
    client.patch("/_emulator/config", json={"journal_limit": 100})
    client.get("/v1/images/tasks/task_" + "f" * 32)
    # (Requests not recorded get no number: while 0, the numbering stood at 99.)
    assert journal(client, {})[-1]["seq"] == (102 if lowered else 100)
    assert len(journal(client, {})) == lowered + 1
