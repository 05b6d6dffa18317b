"""Who may see what: can the run happen at all, is a key required, is a task private to its key.

- `preflight`: one poll of an unknown task with the key. No connection, or the key refused,
  means the run cannot check anything: it stops at once with the reason (exit 2).
- `check_auth`: a poll without a key, and one with a made-up key, must both be 401 with the
  relay's OpenAI-style body (D-1), on every run: they cost nothing.
- `check_isolation`: a task is invisible to another key, which gets the same answer as for an
  unknown task (D-1); needs ``--second-api-key``.
"""

from __future__ import annotations

import secrets
from typing import Any

from .checks import POLL
from .client import Answer, Client, Validator, excerpt
from .deviations import Report

POLL_PATH = "/v1/images/tasks/{}"
ACCESS_CHECKS = ("auth_required", "key_isolation")


def unknown_task_id() -> str:
    """An id no service has handed out (random, so two runs never share one)."""
    return f"task_conform{secrets.token_hex(10)}"


def preflight(client: Client, validator: Validator, report: Report) -> str | None:
    """Why the run cannot happen, or None when the service answers and takes the key."""
    if not validator.has(POLL):
        answer = client.send("GET /", "GET", "/")
        return None if answer.error is None else _unreachable(client, answer)
    task_id = unknown_task_id()
    answer = client.send(POLL, "GET", POLL_PATH.format(task_id), headers=client.auth())
    if answer.error is not None:
        return _unreachable(client, answer)
    if answer.status in (401, 403):
        given = (
            "the key given (--api-key or IMAGE_API_KEY)"
            if client.options.api_key
            else "no key: none was given (set IMAGE_API_KEY or pass --api-key)"
        )
        return (
            f"authentication failed: {POLL} answered {answer.status} to {given}; "
            f"{excerpt(answer.response)}"
        )
    validator.validate(answer, path_parameters={"task_id": task_id})
    return None


def _unreachable(client: Client, answer: Answer) -> str:
    if answer.error and "--request-deadline" in answer.error:
        return f"{client.base_url} did not answer in time: {answer.error}"
    return f"could not connect to {client.base_url}: {answer.error or 'no answer'}"


def check_auth(client: Client, validator: Validator, report: Report) -> None:
    """A poll without a key, and with a made-up one, must be refused with 401 (D-1)."""
    for what, headers in (
        ("without a key", {}),
        ("with a made-up key", {"Authorization": f"Bearer sk-conform-{secrets.token_hex(12)}"}),
    ):
        task_id = unknown_task_id()
        answer = client.send_patiently(
            POLL, "GET", POLL_PATH.format(task_id), headers=headers, on_limited=validator.validate
        )
        if answer.response is None:
            report.error(f"{POLL} {what}: no answer ({answer.error})")
            continue
        validator.validate(answer, path_parameters={"task_id": task_id})
        if answer.status == 401:
            report.passed("auth_required", POLL)
        else:
            report.add(
                "auth_required",
                POLL,
                answer.sample(f"{POLL} {what} answered {answer.status}, not 401"),
            )


def check_isolation(client: Client, validator: Validator, report: Report, task_id: str) -> None:
    """Another key gets for ``task_id`` what it gets for an unknown task (D-1)."""
    second = client.options.second_api_key
    if not second:
        report.cannot_check("key_isolation", POLL, "needs a second key (--second-api-key)")
        return
    unknown = unknown_task_id()
    baseline = client.send(POLL, "GET", POLL_PATH.format(unknown), headers=client.auth(second))
    if baseline.response is None or baseline.status in (401, 403):
        said = baseline.error or f"answered {baseline.status}"
        report.error(f"the second key could not be used to check isolation: {said}")
        return
    validator.validate(baseline, path_parameters={"task_id": unknown})
    other = client.send(POLL, "GET", POLL_PATH.format(task_id), headers=client.auth(second))
    if other.response is None:
        report.error(f"{POLL} of {task_id} with the second key: no answer ({other.error})")
        return
    validator.validate(other, path_parameters={"task_id": task_id})
    if 200 <= (other.status or 0) < 300:
        line = f"a second key can read {task_id}, created with the first key ({other.status})"
    elif (other.status, _code(other)) != (baseline.status, _code(baseline)):
        line = (
            f"the second key gets {other.status} {_code(other)!r} for {task_id} but "
            f"{baseline.status} {_code(baseline)!r} for an unknown task: another key must not "
            "learn that the task exists"
        )
    else:
        report.passed("key_isolation", POLL)
        return
    report.add("key_isolation", POLL, other.sample(line))


def _code(answer: Answer) -> Any:
    data = answer.json()
    return data.get("code") if isinstance(data, dict) else None
