"""Services conform cannot judge, and what it must say about each instead of a pass: a rate
limit or a quota that declines to answer, a key without credit, tasks that always fail, a
gateway whose every path answers alike (see tests/drifts.py, `BLIND`).

None deviates from the contract: each answer is one the real service may give. The cardinal
rule they test: a check that cannot tell is an error (or the run could not run), never a pass,
and never a deviation either.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Scope

from emulator.config.settings import parse_faults

from .conform_support import KEY, SECOND_KEY, Answer, drift_app, header, is_submit


def _refusal(status: int, code: str, message: str) -> Answer:
    body = json.dumps({"code": code, "message": message, "data": None}).encode()
    headers = [(b"content-type", b"application/json")]
    if status == 429:
        headers.append((b"retry-after", b"0"))  # documented (D-9); 0: the test does not wait
    return status, headers, body


def _keyed(scope: Scope) -> bool:
    return header(scope, b"authorization") in (
        f"Bearer {KEY}".encode(),
        f"Bearer {SECOND_KEY}".encode(),
    )


def rate_limited_after_preflight() -> ASGIApp:
    """The preflight's two requests are answered, then every request is a 429 (a key whose
    rate limit is spent): no check of conform's own phases may judge a 429."""
    seen = {"n": 0}

    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        seen["n"] += 1
        return answer if seen["n"] <= 2 else _refusal(429, "rate_limited", "slow down")

    return drift_app(mutate)


def submissions_refused_for_schemathesis() -> ASGIApp:
    """Only schemathesis' submissions are 429s; its polls are answered (and outnumber them):
    a phase judged as a whole would pass on the polls while no submission was judged."""

    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        agent = header(scope, b"user-agent") or b""
        if agent.startswith(b"schemathesis") and _keyed(scope) and is_submit(scope):
            return _refusal(429, "rate_limited", "quota exceeded, retry later")
        return answer

    return drift_app(mutate)


def quota_spent_for_schemathesis() -> ASGIApp:
    """A quota that runs out when schemathesis' phases start: its requests (its User-Agent)
    are 429s, conform's own are answered. The phases saw nothing and must say so."""

    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        agent = header(scope, b"user-agent") or b""
        if agent.startswith(b"schemathesis") and _keyed(scope):
            return _refusal(429, "rate_limited", "quota exceeded, retry later")
        return answer

    return drift_app(mutate)


def no_credit() -> ASGIApp:
    """Every submission is 403 insufficient_quota (D-9), the near misses too: polls are free."""

    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        if is_submit(scope) and answer[0] != 401:
            return _refusal(403, "insufficient_quota", "the balance of this key is 0")
        return answer

    return drift_app(mutate)


def _failing(match: dict[str, str]) -> ASGIApp:
    rules = [
        {
            "match": {"endpoint": "submit", **match},
            "effect": {"kind": "fail_task", "code": "upstream_error", "at_progress": 30},
        }
    ]
    return drift_app(faults=parse_faults(rules, "drift"))


def every_task_fails() -> ASGIApp:
    """Every task ends failed, as the real service may: no picture is ever seen."""
    return _failing({})


def gpt_tasks_fail() -> ASGIApp:
    """Only gpt-image-2 tasks fail: the n=2 WebP scenario is never seen."""
    return _failing({"model": "gpt-image-2"})


def gateway_answers_every_path_alike() -> ASGIApp:
    """A gateway that checks keys, then answers every path with a schema-valid 404
    task_not_found: no task API behind it (or a base URL one level off)."""

    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        if _keyed(scope):
            return _refusal(404, "task_not_found", "task does not exist")
        return answer

    return drift_app(mutate)
