"""Fault rules that could never fire, or fields a rule would drop, are refused naming the
field (an application developer's review: such rules were answered 201 and sat at 0 hits)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from emulator.config import ConfigError
from emulator.core.fault_parsing import FaultError, parse_rule

from .conftest import Client, MakeClient
from .test_ui_pages import problem, send

NANO = {"model": "NanoBanana", "prompt": "a cube"}


@pytest.mark.parametrize(
    ("rule", "field", "needle"),
    [
        (
            {"effect": "drop", "match": {"model": "NanoBanna"}},
            "fault.match.model",
            "did you mean 'NanoBanana'?",
        ),
        (
            {"effect": "drop", "match": {"task_type": "img2img"}},
            "fault.match.task_type",
            "must be one of text2image, image2image",
        ),
        (
            {"effect": {"kind": "partial", "images": 1}, "match": {"endpoint": "poll"}},
            "fault.match.endpoint",
            "poll never meets kind partial",
        ),
        (
            {"effect": "fail_task", "match": {"endpoint": "result"}},
            "fault.match.endpoint",
            "result never meets kind fail_task",
        ),
        (
            {"effect": {"kind": "drop", "code": "x"}},
            "fault.effect.code",
            "does not apply to kind drop",
        ),
        (
            {"effect": {"kind": "partial", "images": 1, "at_progress": 5}},
            "fault.effect.at_progress",
            "does not apply to kind partial (it takes images)",
        ),
        (
            {"effect": {"kind": "fail_task", "seconds": 2}},
            "fault.effect.seconds",
            "seconds is for kind latency or hang",
        ),
    ],
)
def test_a_rule_that_could_never_fire_or_would_drop_a_field_is_refused(
    client: Client, rule: dict[str, Any], field: str, needle: str
) -> None:
    response = client.post("/_emulator/faults", json=rule)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith(field) and needle in message, message
    assert client.get("/_emulator/faults").json()["faults"] == []


def test_the_rules_that_can_fire_are_still_taken(client: Client) -> None:
    rules = [
        {"effect": "drop", "match": {"model": "gpt-image-2", "task_type": "image2image"}},
        {"effect": {"kind": "partial", "images": 1}, "match": {"endpoint": "submit"}},
        {"effect": {"kind": "fail_task", "code": None}, "match": {"endpoint": "any"}},
        {"effect": {"kind": "malformed"}, "match": {"endpoint": "result"}},
    ]
    assert client.post("/_emulator/faults", json=rules).status_code == 201


def test_a_parse_without_the_catalogue_leaves_the_model_to_the_caller() -> None:
    # The config layer parses rules before any catalogue is loaded; the emulator checks the
    # models when it starts (below).
    assert parse_rule({"effect": "drop", "match": {"model": "Nope"}}, "r").match.model == "Nope"
    with pytest.raises(FaultError, match="did you mean 'gpt-image-2'"):
        parse_rule(
            {"effect": "drop", "match": {"model": "gpt-image2"}}, "r", models=["gpt-image-2"]
        )


def test_a_fault_file_rule_on_a_model_the_catalogue_lacks_stops_start_up(
    tmp_path: Path, make_client: MakeClient
) -> None:
    path = tmp_path / "faults.toml"
    path.write_text('[[faults]]\nid = "typo"\neffect = "drop"\nmatch = {model = "NanoBanna"}\n')
    with pytest.raises(ConfigError, match=r"typo\.match\.model 'NanoBanna'.*'NanoBanana'") as no:
        make_client(fault_file=str(path))
    assert no.value.message.startswith("setting 'fault_file' (its rule 1): ")
    assert no.value.field == "fault_file"


def test_a_configured_rule_that_could_never_fire_is_named_by_its_source_and_place(
    tmp_path: Path, make_client: MakeClient
) -> None:
    # Both sources number their rules from rule-1: the id alone did not say which one.
    path = tmp_path / "faults.toml"
    path.write_text('[[faults]]\neffect = "drop"\n')
    faults = ({"effect": "drop"}, {"effect": "drop", "match": {"model": "NanoBanna"}})
    with pytest.raises(ConfigError) as no:
        make_client(faults=faults, fault_file=str(path))
    assert no.value.message.startswith("setting 'faults' (its rule 2): ")
    assert no.value.field == "faults"


def test_a_partial_rule_spends_no_hit_on_a_task_it_could_not_shorten(client: Client) -> None:
    client.post("/_emulator/faults", json={"effect": {"kind": "partial", "images": 2}})
    whole = client.run_to_end({"model": "NanoBanana2-0.5K", "prompt": "x", "n": 2})
    assert whole["metadata"]["result_count"] == 2
    assert client.get("/_emulator/faults").json()["faults"][0]["hits"] == 0
    cut = client.run_to_end({"model": "NanoBanana2-0.5K", "prompt": "x", "n": 3})
    assert cut["metadata"]["result_count"] == 2
    assert client.get("/_emulator/faults").json()["faults"][0]["hits"] == 1


# -- the dashboard's form: the no-script path sends every field ---------------------------
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"kind": "drop", "answer_headers": "X-A: 1"},
            "answer_headers does not apply to kind drop",
        ),
        ({"kind": "drop", "code": "x"}, "code does not apply to kind drop"),
        ({"kind": "respond", "answer_status": "200", "code": "x"}, "code does not apply"),
        ({"kind": "respond", "answer_status": "200", "status": "503"}, "status does not apply"),
        ({"kind": "latency", "seconds": "1", "images": "2"}, "images does not apply"),
        ({"kind": "drop", "model": "NanoBanna"}, "did you mean 'NanoBanana'"),
        ({"kind": "fail_task", "endpoint": "poll"}, "poll never meets kind fail_task"),
    ],
)
def test_the_form_refuses_a_field_the_kind_does_not_use(
    client: Client, fields: dict[str, str], named: str
) -> None:
    # As a browser without the script sends the form: every field, most of them blank.
    blank = dict.fromkeys(
        ("status", "retry_after", "code", "message", "at_progress", "images", "answer_status"),
        "",
    ) | {"answer_body": "", "answer_headers": "", "seconds": "", "body_kind": "json"}
    response = send(client, "/faults/add", blank | fields)
    assert response.status_code == 400, response.text
    assert named in html.unescape(problem(response))
    assert client.get("/_emulator/faults").json()["faults"] == []


def test_the_form_with_only_the_kinds_fields_filled_in_adds_the_rule(client: Client) -> None:
    fields = {"kind": "drop", "answer_headers": "", "code": " ", "body_kind": "text"}
    assert send(client, "/faults/add", fields).status_code == 303
    assert client.get("/_emulator/faults").json()["faults"][0]["effect"]["kind"] == "drop"
