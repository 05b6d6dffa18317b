"""A respond rule's JSON answer typed in the dashboard's fault form: numbers JSON can parse
but the rule cannot keep are a 400 on the form's page naming ``answer_body``, never a 500."""

from __future__ import annotations

import pytest

from .conftest import Client
from .test_ui_pages import problem, send


@pytest.mark.parametrize(
    "answer",
    [
        '{"n": ' + "1" * 5000 + "}",  # int() refuses 4300+ digits: a ValueError, was a 500
        '{"n": 1e999}',  # an infinity once parsed
        '{"n": NaN}',
    ],
    ids=["5000 digits", "1e999", "NaN"],
)
def test_an_unkeepable_number_in_the_answer_body_is_refused(client: Client, answer: str) -> None:
    response = send(
        client,
        "/faults/add",
        {"kind": "respond", "answer_status": "418", "body_kind": "json", "answer_body": answer},
    )
    assert response.status_code == 400, response.text[:500]
    assert "answer_body" in problem(response) or "effect.json" in problem(response)
    assert client.get("/_emulator/faults").json()["faults"] == []


@pytest.mark.parametrize(
    "answer",
    ['{"a": 1, "a": 2}', '{"outer": {"code": "x", "code": "y"}}'],
    ids=["top level", "nested"],
)
def test_a_repeated_name_in_the_answer_body_is_refused(client: Client, answer: str) -> None:
    # The control plane refuses a repeated name in a JSON body; the form kept the last value.
    response = send(
        client,
        "/faults/add",
        {"kind": "respond", "answer_status": "418", "body_kind": "json", "answer_body": answer},
    )
    assert response.status_code == 400, response.text[:500]
    assert "answer_body repeats the name" in problem(response)
    assert client.get("/_emulator/faults").json()["faults"] == []
