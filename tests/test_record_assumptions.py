"""The offline judges of D-12 (blank prompt) and D-13 (unknown fields): what a recorded answer
confirms and what it contradicts, each way round."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulator.recording.assumptions import (
    CONFIRMS,
    CONTRADICTS,
    UNTOUCHED,
    Verdict,
    judge_blank_prompt,
    judge_unknown_fields,
)
from emulator.recording.cassette import Exchange
from emulator.recording.evidence import Evidence, Sent

OK = {"code": "success", "data": {"task_id": "task_1", "status": "queued"}}


def _sent(fields: dict[str, Any], status: int, answer: Any) -> Sent:
    exchange = Exchange(
        line=1, kind="submit", t=0.0, method="POST", path="/v1/images/tasks", status=status
    )
    body = json.dumps(answer).encode()
    return Sent(exchange, "POST /v1/images/tasks", None, fields, False, body, answer)


def _verdict(judge: Any, *sent: Sent) -> str:
    evidence = Evidence(cassette=None, sent=list(sent), tasks={}, pictures={})  # type: ignore[arg-type]
    verdict = Verdict("D-n")
    judge(evidence, verdict)
    return verdict.outcome


def _refusal(field: str) -> dict[str, Any]:
    return {"code": "invalid_request", "message": f"{field} must not be blank", "data": None}


@pytest.mark.parametrize("prompt", ["", " ", "\u3000\t"])
def test_a_blank_prompt_accepted_contradicts_d12_and_refused_naming_it_confirms(
    prompt: str,
) -> None:
    fields = {"model": "NanoBanana2-0.5K", "prompt": prompt}
    assert _verdict(judge_blank_prompt, _sent(fields, 200, OK)) == CONTRADICTS
    assert _verdict(judge_blank_prompt, _sent(fields, 400, _refusal("prompt"))) == CONFIRMS


def test_a_prompt_with_text_does_not_touch_d12() -> None:
    fields = {"model": "NanoBanana2-0.5K", "prompt": " a cat "}
    assert _verdict(judge_blank_prompt, _sent(fields, 200, OK)) == UNTOUCHED


def test_an_unknown_field_ignored_confirms_d13_and_refused_naming_it_contradicts() -> None:
    fields = {"model": "NanoBanana2-0.5K", "prompt": "x", "sise": "1K"}
    assert _verdict(judge_unknown_fields, _sent(fields, 200, OK)) == CONFIRMS
    refused = _sent(fields, 400, _refusal("sise"))
    assert _verdict(judge_unknown_fields, refused) == CONTRADICTS
    known_only = {"model": "NanoBanana2-0.5K", "prompt": "x"}
    assert _verdict(judge_unknown_fields, _sent(known_only, 200, OK)) == UNTOUCHED
