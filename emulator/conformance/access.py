"""Who may see what: can the run happen at all, is a key required, is a task private to its key.

- `preflight`: one poll of an unknown task with the key. No connection, the key refused, no
  credit, or a rate limit that outlasts its retries means the run cannot check anything: it
  stops at once with the reason (exit 2). Then the same with a path no API has: a not-found
  the task route answers exactly like it is no evidence that the route is there (a gateway
  that answers 404 for every path, a base URL one level off; `evidence`). A GET-only run then
  cannot tell a task API from nothing and stops (exit 2); with generation, the submissions
  tell, and the task routes' 404s do not count as answers.
- `check_auth`: a poll without a key, and one with a made-up key, must both be 401 with the
  relay's OpenAI-style body (D-1), on every run: they cost nothing.
- `check_isolation`: a task is invisible to another key, which gets the same answer as for an
  unknown task (D-1); needs ``--second-api-key``.
"""

from __future__ import annotations

import secrets
from typing import Any

from .checks import POLL
from .client import MAX_429_RETRIES, Answer, Client
from .deviations import Report
from .evidence import NO_CREDIT, RATE_LIMITED, signature
from .samples import excerpt
from .validation import Validator

POLL_PATH = "/v1/images/tasks/{}"
#: A path beside the task routes that no API has (the probe of `preflight`).
NO_ROUTE_PATH = "/v1/images/conform-no-such-route-{}"
BASE_URL_HINT = "is the base URL the root of the API (the one /v1/images/tasks is under)?"
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
    answer = client.send_patiently(
        POLL,
        "GET",
        POLL_PATH.format(task_id),
        headers=client.auth(),
        on_limited=lambda a: validator.validate(a, path_parameters={"task_id": task_id}),
    )
    if answer.error is not None:
        return _unreachable(client, answer)
    declined = _declined(answer)
    if declined is not None:
        return declined
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
    return _probe_routes(client, answer, report)


def _declined(answer: Answer) -> str | None:
    """Why the run cannot happen when the service declined to answer at all."""
    if answer.refusal == NO_CREDIT:
        return f"the key has no credit: {answer.operation} answered {answer.status}; " + excerpt(
            answer.response
        )
    if answer.refusal == RATE_LIMITED:
        return (
            f"rate limited: GET {answer.request.url.path} answered 429 to each of its "
            f"{MAX_429_RETRIES + 1} tries; lower --rate-limit or run again later"
        )
    return None


def _probe_routes(client: Client, poll: Answer, report: Report) -> str | None:
    """Whether the task route's not-found is evidence (see the module's docstring)."""
    if poll.status not in (400, 404) or poll.response is None:
        return None  # an answer a missing route does not give: the checks judge it
    probe = client.send_patiently(
        "GET (no such route)",
        "GET",
        NO_ROUTE_PATH.format(secrets.token_hex(6)),
        headers=client.auth(),
        on_limited=lambda a: None,
    )
    if probe.response is None:
        return None  # no answer to compare: the rest of the run tells
    if probe.refusal is not None:
        return _declined(probe)
    seen = signature(
        poll.status, poll.response.headers.get("content-type", ""), poll.response.content
    )
    elsewhere = signature(
        probe.status, probe.response.headers.get("content-type", ""), probe.response.content
    )
    if seen != elsewhere:
        return None
    report.routes_unproven = True
    if client.options.allow_generation:
        return None  # the submissions tell whether the route is there
    code = f" {seen[2]}" if seen[2] else ""
    return (
        f"{POLL} answers an unknown task exactly as a path no API has ({poll.status}{code}): "
        "nothing shows a task API at this base URL (a gateway that answers every path alike, "
        f"or a base URL one level off); {BASE_URL_HINT} (--allow-generation tells by a "
        "submission)"
    )


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
        if answer.refusal is not None:
            why = f"a poll {what} answered {answer.status} ({answer.refusal}) to each try"
            report.could_not_check("auth_required", POLL, why)
            continue
        if answer.status == 404 and report.routes_unproven:
            why = f"a poll {what} answered 404, as a path no API has"
            report.could_not_check("auth_required", POLL, why)
            continue
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
    baseline = client.send_patiently(
        POLL,
        "GET",
        POLL_PATH.format(unknown),
        headers=client.auth(second),
        on_limited=lambda a: validator.validate(a, path_parameters={"task_id": unknown}),
    )
    if baseline.response is None or baseline.status in (401, 403) or baseline.refusal:
        said = baseline.error or f"answered {baseline.status}"
        report.error(f"the second key could not be used to check isolation: {said}")
        return
    validator.validate(baseline, path_parameters={"task_id": unknown})
    other = client.send_patiently(
        POLL,
        "GET",
        POLL_PATH.format(task_id),
        headers=client.auth(second),
        on_limited=lambda a: validator.validate(a, path_parameters={"task_id": task_id}),
    )
    if other.response is None:
        report.error(f"{POLL} of {task_id} with the second key: no answer ({other.error})")
        return
    validator.validate(other, path_parameters={"task_id": task_id})
    if other.refusal is not None:
        why = f"the second key's poll of {task_id} answered {other.status} ({other.refusal})"
        report.could_not_check("key_isolation", POLL, why)
        return
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
