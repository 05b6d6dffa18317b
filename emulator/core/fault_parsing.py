"""Fault rules from plain data (TOML table, JSON object, control-plane body): every field
checked (type, range, text, which effect it applies to) and the rule built
(``emulator.core.faults`` holds the rule itself and its matching). A bad field is a
``FaultError`` naming it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Mapping
from typing import Any, get_args

from ..errors import EmulatorError
from .answers import (
    MAX_ANSWER_BYTES,
    NO_CONTENT,
    body_problem,
    headers_problem,
    json_bytes,
    json_problem,
    status_problem,
)
from .checks import (
    MAX_CODE_CHARS,
    MAX_MATCH_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    header_problem,
    id_problem,
    number_problem,
    repeated_header,
    shown,
    text_problem,
    unknown_fields_problem,
)
from .faults import (
    EFFECTS,
    ENDPOINTS,
    HTTP_ERROR_STATUSES,
    KIND_FIELDS,
    TASK_EFFECTS,
    Effect,
    Endpoint,
    FaultRule,
    Match,
)
from .tasks import TaskType


class FaultError(EmulatorError, ValueError):
    """A fault rule is malformed; the message names the field."""

    # Under the one error root (a 400 when it reaches a route); still a ValueError for callers.


_DEFAULT_ERROR_CODES = {
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
#: Documented range of every number in a rule (docs/control-plane.md, the contract).
RANGES: dict[str, tuple[float, float]] = {
    "probability": (0.0, 1.0),
    "times": (1, 10**9),
    "at_progress": (0, 99),
    "images": (1, 100),
    "retry_after": (0, 86_400),
    "seconds": (0.0, 3600.0),
}
#: Longest text of every text field of a rule.
TEXT_LIMITS: dict[str, int] = {
    "code": MAX_CODE_CHARS,
    "message": MAX_MESSAGE_CHARS,
    "model": MAX_NAME_CHARS,
    "task_type": MAX_NAME_CHARS,
    "prompt_contains": MAX_MATCH_CHARS,
    "api_key": MAX_TEXT_CHARS,
    "body": MAX_ANSWER_BYTES,
}
#: Most headers one rule may match on.
MAX_MATCH_HEADERS = 32


def check_rule_count(installed: int, added: int, limit: int, where: str = "faults") -> None:
    """FaultError unless ``installed + added`` rules fit under ``limit`` (the
    ``max_fault_rules`` setting): every request is matched against every rule, so the list
    is bounded wherever rules come from (control plane, fault file, config, fixture)."""
    if installed + added > limit:
        raise FaultError(
            f"{where}: at most {limit} fault rules can be installed (setting max_fault_rules); "
            f"{installed} are and {added} more were given",
            field="max_fault_rules",
        )


def _get(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``raw[key]`` checked: None when absent, else of ``kind``, finite and in ``RANGES``,
    valid text within ``TEXT_LIMITS``; FaultError naming ``where.key`` otherwise."""
    value = raw.get(key)
    if value is None:
        return None
    kinds = _tuple(kind)
    # JSON Schema (and JavaScript) call 3.0 an integer: take it as 3.
    if int in kinds and float not in kinds and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
        raise FaultError(f"{where}.{key} has the wrong type: {shown(value)}")
    problem = None
    if isinstance(value, int | float) and key in RANGES:
        problem = number_problem(value, *RANGES[key])
    elif isinstance(value, str):
        problem = text_problem(value, TEXT_LIMITS.get(key, MAX_TEXT_CHARS))
    if problem is not None:
        raise FaultError(f"{where}.{key} {problem}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _unknown(raw: Mapping[Any, Any], known: set[str], where: str) -> None:
    problem = unknown_fields_problem(raw, known)
    if problem is not None:
        raise FaultError(f"{where} {problem}")


def parse_rule(
    raw: Mapping[str, Any],
    rule_id: str,
    where: str = "fault",
    models: Collection[str] | None = None,
) -> FaultRule:
    """Build a rule from plain data (TOML table, JSON object); FaultError names the field.

    A rule that could never fire is refused too (``never_fires``); ``models``, the catalogue's
    model names, when the caller knows them.
    """
    if not isinstance(raw, Mapping):
        raise FaultError(f"{where} must be an object")
    _unknown(raw, {"id", "match", "effect", "probability", "times"}, where)
    effect = _parse_effect(raw.get("effect"), f"{where}.effect")
    # null means absent, as everywhere in a rule (and in the control plane's contract).
    match = _parse_match(raw.get("match") if raw.get("match") is not None else {}, f"{where}.match")
    never_fires(effect, match, where, models)
    probability = _get(raw, "probability", (int, float), where)
    probability = 1.0 if probability is None else float(probability)
    times = _get(raw, "times", int, where)
    given_id = raw.get("id")
    if given_id is not None:
        if not isinstance(given_id, str):
            raise FaultError(f"{where}.id has the wrong type: {shown(given_id)}")
        problem = id_problem(given_id)
        if problem is not None:
            raise FaultError(f"{where}.id {problem}")
    return FaultRule(given_id or rule_id, effect, match, probability, times)


def never_fires(
    effect: Effect, match: Match, where: str, models: Collection[str] | None = None
) -> None:
    """FaultError naming the field of a rule that could never fire, rather than a rule that
    sits there with 0 hits: a task effect on an endpoint that creates no task, a task type
    that does not exist, a model the catalogue does not have (``models``, when given)."""
    if effect.kind in TASK_EFFECTS and match.endpoint not in ("submit", "any"):
        raise FaultError(
            f"{where}.match.endpoint {match.endpoint} never meets kind {effect.kind}: it "
            "decides a task's fate when the task is submitted (endpoint submit, or any)",
            field=f"{where}.match.endpoint",
        )
    task_types = get_args(TaskType)
    if match.task_type is not None and match.task_type not in task_types:
        raise FaultError(
            f"{where}.match.task_type must be one of {', '.join(task_types)} (or left out for "
            f"any), got {shown(match.task_type)}",
            field=f"{where}.match.task_type",
        )
    if models is not None and match.model is not None and match.model not in models:
        close = difflib.get_close_matches(match.model, models, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; the models are {', '.join(models)}"
        raise FaultError(
            f"{where}.match.model {shown(match.model)} is not a model of the catalogue, so the "
            f"rule could never match{hint}",
            field=f"{where}.match.model",
        )


def _parse_match(raw: Any, where: str) -> Match:
    if not isinstance(raw, Mapping):
        raise FaultError(f"{where} must be an object")
    _unknown(
        raw, {"endpoint", "model", "task_type", "prompt_contains", "api_key", "headers"}, where
    )
    endpoint: Endpoint = _get(raw, "endpoint", str, where) or "any"
    if endpoint not in ENDPOINTS:
        raise FaultError(f"{where}.endpoint must be one of {', '.join(ENDPOINTS)}")
    headers = raw.get("headers") if raw.get("headers") is not None else {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise FaultError(f"{where}.headers must map header names to string values")
    if len(headers) > MAX_MATCH_HEADERS:
        raise FaultError(f"{where}.headers may name at most {MAX_MATCH_HEADERS} headers")
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            raise FaultError(f"{where}.headers: {problem}")
    # Matched case-insensitively: of two names differing only in case, one would be lost.
    problem = repeated_header(headers)
    if problem is not None:
        raise FaultError(f"{where}.headers: {problem}")
    return Match(
        endpoint=endpoint,
        model=_get(raw, "model", str, where),
        task_type=_get(raw, "task_type", str, where),
        prompt_contains=_get(raw, "prompt_contains", str, where),
        api_key=_get(raw, "api_key", str, where),
        headers={k.lower(): v for k, v in headers.items()},
    )


def _parse_effect(raw: Any, where: str) -> Effect:
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, Mapping):
        raise FaultError(f"{where} is required: an object with a kind")
    _unknown(raw, {"kind", *(name for names in KIND_FIELDS.values() for name in names)}, where)
    kind = raw.get("kind")
    if kind not in EFFECTS:
        raise FaultError(f"{where}.kind must be one of {', '.join(EFFECTS)}", field=f"{where}.kind")
    _unused(raw, kind, where)
    if kind == "respond":
        return _parse_respond(raw, where)
    code = _get(raw, "code", str, where)
    message = _get(raw, "message", str, where)
    for name, text in (("code", code), ("message", message)):
        if text == "":  # else it would quietly become the default (an empty error is not)
            raise FaultError(
                f"{where}.{name} must not be empty; leave it out (or null) for the default",
                field=f"{where}.{name}",
            )
    at_progress = _get(raw, "at_progress", int, where)
    images = _get(raw, "images", int, where)
    status = _get(raw, "status", int, where)
    retry_after = _get(raw, "retry_after", int, where)
    seconds = _get(raw, "seconds", (int, float), where)
    if kind == "partial" and images is None:
        raise FaultError(f"{where}.images is required for a partial result (1 to 100)")
    if kind == "http_error":
        if status not in HTTP_ERROR_STATUSES:
            raise FaultError(
                f"{where}.status must be one of {', '.join(map(str, HTTP_ERROR_STATUSES))}"
            )
        code = code or _DEFAULT_ERROR_CODES[status]
        if status == 429 and retry_after is None:
            retry_after = 1
    if kind == "latency" and seconds is None:
        raise FaultError(f"{where}.seconds is required for latency")
    if kind == "fail_task":
        code = code or "upstream_error"
        message = message or f"the upstream model failed ({code})"
    return Effect(
        kind,
        code,
        message,
        at_progress,
        images,
        status,
        retry_after,
        None if seconds is None else float(seconds),
    )


def _unused(raw: Mapping[str, Any], kind: str, where: str) -> None:
    """FaultError naming the first field (not null) that ``kind`` does not use: a field the
    effect would ignore reads as if it did something (``{"kind": "drop", "code": "x"}``)."""
    takes = KIND_FIELDS[kind]
    for name in sorted(set(raw) - {"kind", *takes}):
        if raw[name] is not None:
            which = f"it takes {', '.join(takes)}" if takes else "it takes no other field"
            users = [k for k, names in KIND_FIELDS.items() if name in names]
            raise FaultError(
                f"{where}.{name} does not apply to kind {kind} ({which}); {name} is for kind "
                f"{' or '.join(users)}",
                field=f"{where}.{name}",
            )


def _parse_respond(raw: Mapping[str, Any], where: str) -> Effect:
    """A rule's own answer (``emulator.core.answers``); FaultError names the field."""
    status = raw.get("status")
    if isinstance(status, float) and status.is_integer():
        status = int(status)
    problem = status_problem(status)
    if problem is not None:
        raise FaultError(f"{where}.status {problem}")
    value, body = raw.get("json"), _get(raw, "body", str, where)
    if value is not None and body is not None:
        raise FaultError(
            f"{where}.json and {where}.body cannot both be given: a JSON value or a text body"
        )
    if value is not None:
        problem = json_problem(value)
        if problem is not None:
            raise FaultError(f"{where}.json {problem}")
        value = json.loads(json_bytes(value))  # a copy: the caller's object may change later
    elif body is not None:
        problem = body_problem(body)
        if problem is not None:
            raise FaultError(f"{where}.body {problem}")
    if status in NO_CONTENT and (value is not None or body is not None):
        raise FaultError(f"{where}.status {status} carries no body: leave out json and body")
    headers = raw.get("headers")
    if headers is not None:
        problem = headers_problem(headers)
        if problem is not None:
            raise FaultError(f"{where}.headers: {problem}")
        headers = dict(headers)
    return Effect("respond", status=status, json=value, body=body, headers=headers)
