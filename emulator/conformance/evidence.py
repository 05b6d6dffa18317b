"""Whether an answer is evidence at all: a check that cannot tell is an error, never a pass.

A 429 (rate limited) or a refusal for want of credit is the service declining to answer, not
its answer to what was asked: it is retried (conform's own requests) and, when it persists,
the check it was for "could not check" - never a deviation, never a pass. A phase whose
answers were mostly such refusals saw nothing and ends in error, saying why and how many.

A not-found is evidence only when the task route answers it differently from a path no API
has (`signature`): a gateway that checks keys and then answers 404 for every path, or a base
URL one level off, answers both alike, and then nothing shows that a task API is there.

Pure functions of statuses and bodies (no I/O), so each rule is tested on its own.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

RATE_LIMITED = "rate limited"
NO_CREDIT = "no credit"
#: The service's code for a key whose balance cannot pay for a task (SPEC D-9; OpenAI-style
#: relays send the same code in ``error.code``, some with a 429).
NO_CREDIT_CODE = "insufficient_quota"
#: A phase whose answers were at least this share of refusals checked (nearly) nothing.
REFUSED_SHARE = 0.5


class CannotRun(Exception):
    """The run cannot go on, and checked nothing that matters: its message says why."""


class NoCredit(CannotRun):
    """The key has no credit: a paid step cannot be taken at all."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the key has no credit: {what}")


def code_of(body: bytes) -> str | None:
    """The machine-readable code of an error body: the envelope's ``code`` (D-2) or the
    OpenAI-style ``error.code`` / ``error.type`` (D-1); None when there is none."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("code"), str):
        return str(data["code"])
    error = data.get("error")
    if isinstance(error, dict):
        for key in ("code", "type"):
            if isinstance(error.get(key), str):
                return str(error[key])
    return None


def refusal_of(status: int | None, body: bytes) -> str | None:
    """`RATE_LIMITED`, `NO_CREDIT`, or None when the answer is the service's own verdict."""
    if status not in (402, 403, 429):
        return None
    if code_of(body) == NO_CREDIT_CODE or status == 402:
        return NO_CREDIT
    return RATE_LIMITED if status == 429 else None


def signature(status: int | None, content_type: str, body: bytes) -> tuple[Any, ...]:
    """What tells two not-found answers apart: status, media type and error code (the message
    is left out: it names the id asked for)."""
    media_type = content_type.split(";")[0].strip().lower()
    return (status, media_type, code_of(body))


def refused_phase(answers: int, refusals: Counter[str]) -> str | None:
    """Why a phase with ``answers`` answers, ``refusals`` of them refusals by kind, could not
    check, or None when it saw enough."""
    refused = sum(refusals.values())
    if not refused or refused < answers * REFUSED_SHARE:
        return None
    return f"{refused} of its {answers} answers were refusals ({describe(refusals)})"


def describe(refusals: Counter[str]) -> str:
    """``"40 x 429 rate limited, 2 x no credit"``."""
    names = {RATE_LIMITED: "429 rate limited", NO_CREDIT: f"no credit ({NO_CREDIT_CODE})"}
    return ", ".join(f"{n} x {names.get(kind, kind)}" for kind, n in refusals.most_common())


def advice(refusals: Counter[str]) -> str:
    """What the user can do about the refusals."""
    if refusals.get(NO_CREDIT):
        return "the key has no credit: top it up, or use another key"
    return "the service limits this key's rate: lower --rate-limit, or run again later"
