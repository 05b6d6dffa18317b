"""Fault rules: an ordered list; the first rule that matches a request applies its effect.

Rules are plain data (loadable from TOML, JSON or the control plane). Whether a rule fires is
decided by a seeded draw per (rule, evaluation), and its ``times`` budget is claimed atomically
in the store, so the same seed and the same request sequence give the same decisions, also
across workers sharing a store.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import EmulatorError

Endpoint = Literal["submit", "poll", "result", "any"]
EffectKind = Literal[
    "fail_task", "partial", "http_error", "latency", "hang", "drop", "malformed", "empty"
]
ENDPOINTS: tuple[str, ...] = ("submit", "poll", "result", "any")
EFFECTS: tuple[str, ...] = (
    "fail_task",
    "partial",
    "http_error",
    "latency",
    "hang",
    "drop",
    "malformed",
    "empty",
)
#: Effects that change the task's fate; they apply when the task is submitted.
TASK_EFFECTS = frozenset({"fail_task", "partial"})
HTTP_ERROR_STATUSES = (429, 500, 502, 503, 504)
_DEFAULT_ERROR_CODES = {
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class FaultError(EmulatorError, ValueError):
    """A fault rule is malformed; the message names the field."""

    # Under the one error root (a 400 when it reaches a route); still a ValueError for callers.


@dataclass(frozen=True, slots=True)
class Match:
    """What a request must look like for the rule to apply; None matches anything."""

    endpoint: Endpoint = "any"
    model: str | None = None
    task_type: str | None = None
    prompt_contains: str | None = None
    api_key: str | None = None
    #: Header name (case-insensitive) -> exact value.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Effect:
    kind: EffectKind
    #: fail_task: error code and message; at_progress None fails while queued.
    code: str | None = None
    message: str | None = None
    at_progress: int | None = None
    #: partial: images returned (fewer than n).
    images: int | None = None
    #: http_error: status and Retry-After seconds (429 defaults to 1).
    status: int | None = None
    retry_after: int | None = None
    #: latency: seconds added before answering; hang: seconds held at most.
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class FaultRule:
    id: str
    effect: Effect
    match: Match = field(default_factory=Match)
    probability: float = 1.0
    #: None: unlimited; otherwise the rule expires after this many hits.
    times: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["match"]["headers"] = dict(self.match.headers)
        return data

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FaultRule:
        """The rule ``to_dict`` stored, built field by field: it was checked when first parsed
        (``parse_rule``), so a store reads it back without checking it again."""
        return cls(
            id=raw["id"],
            effect=Effect(**raw["effect"]),
            match=Match(**raw["match"]),
            probability=raw["probability"],
            times=raw["times"],
        )


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What rules match on, gathered by the route handling the request."""

    endpoint: Endpoint
    api_key: str
    headers: Mapping[str, str]
    model: str | None = None
    task_type: str | None = None
    prompt: str | None = None


def matches(rule: FaultRule, facts: RequestFacts) -> bool:
    m = rule.match
    if m.endpoint != "any" and m.endpoint != facts.endpoint:
        return False
    if rule.effect.kind in TASK_EFFECTS and facts.endpoint != "submit":
        return False
    if m.model is not None and m.model != facts.model:
        return False
    if m.task_type is not None and m.task_type != facts.task_type:
        return False
    if m.prompt_contains is not None and m.prompt_contains not in (facts.prompt or ""):
        return False
    if m.api_key is not None and m.api_key != facts.api_key:
        return False
    return all(facts.headers.get(name.lower()) == value for name, value in m.headers.items())


def fires(seed: int, rule: FaultRule, evaluation: int) -> bool:
    """The seeded coin toss for the ``evaluation``-th time ``rule`` matched."""
    if rule.probability >= 1.0:
        return True
    if rule.probability <= 0.0:
        return False
    return random.Random(f"{seed}:fault:{rule.id}:{evaluation}").random() < rule.probability


# -- parsing ------------------------------------------------------------------------------
def _get(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    kinds = _tuple(kind)
    # JSON Schema (and JavaScript) call 3.0 an integer: take it as 3.
    if int in kinds and float not in kinds and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise FaultError(f"{where}.{key} has the wrong type: {value!r}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def parse_rule(raw: Mapping[str, Any], rule_id: str, where: str = "fault") -> FaultRule:
    """Build a rule from plain data (TOML table, JSON object); FaultError names the field."""
    if not isinstance(raw, Mapping):
        raise FaultError(f"{where} must be an object")
    known = {"id", "match", "effect", "probability", "times"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FaultError(f"{where} has unknown field(s): {', '.join(unknown)}")
    effect = _parse_effect(raw.get("effect"), f"{where}.effect")
    # null means absent, as everywhere in a rule (and in the control plane's contract).
    match = _parse_match(raw.get("match") if raw.get("match") is not None else {}, f"{where}.match")
    probability = _get(raw, "probability", (int, float), where)
    probability = 1.0 if probability is None else float(probability)
    if not 0.0 <= probability <= 1.0:
        raise FaultError(f"{where}.probability must be between 0 and 1")
    times = _get(raw, "times", int, where)
    if times is not None and times < 1:
        raise FaultError(f"{where}.times must be >= 1")
    given_id = _get(raw, "id", str, where)
    return FaultRule(given_id or rule_id, effect, match, probability, times)


def _parse_match(raw: Any, where: str) -> Match:
    if not isinstance(raw, Mapping):
        raise FaultError(f"{where} must be an object")
    known = {"endpoint", "model", "task_type", "prompt_contains", "api_key", "headers"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FaultError(f"{where} has unknown field(s): {', '.join(unknown)}")
    endpoint: Endpoint = _get(raw, "endpoint", str, where) or "any"
    if endpoint not in ENDPOINTS:
        raise FaultError(f"{where}.endpoint must be one of {', '.join(ENDPOINTS)}")
    headers = raw.get("headers") if raw.get("headers") is not None else {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise FaultError(f"{where}.headers must map header names to string values")
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
    known = {"kind", "code", "message", "at_progress", "images", "status", "retry_after", "seconds"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FaultError(f"{where} has unknown field(s): {', '.join(unknown)}")
    kind = raw.get("kind")
    if kind not in EFFECTS:
        raise FaultError(f"{where}.kind must be one of {', '.join(EFFECTS)}")
    code = _get(raw, "code", str, where)
    message = _get(raw, "message", str, where)
    at_progress = _get(raw, "at_progress", int, where)
    images = _get(raw, "images", int, where)
    status = _get(raw, "status", int, where)
    retry_after = _get(raw, "retry_after", int, where)
    seconds = _get(raw, "seconds", (int, float), where)
    if at_progress is not None and not 0 <= at_progress <= 99:
        raise FaultError(f"{where}.at_progress must be between 0 and 99 (omit: while queued)")
    if kind == "partial" and (images is None or images < 1):
        raise FaultError(f"{where}.images must be >= 1 for a partial result")
    if kind == "http_error":
        if status not in HTTP_ERROR_STATUSES:
            raise FaultError(
                f"{where}.status must be one of {', '.join(map(str, HTTP_ERROR_STATUSES))}"
            )
        code = code or _DEFAULT_ERROR_CODES[status]
        if status == 429 and retry_after is None:
            retry_after = 1
    if retry_after is not None and retry_after < 0:
        raise FaultError(f"{where}.retry_after must be >= 0")
    if kind in ("latency", "hang"):
        if seconds is None and kind == "latency":
            raise FaultError(f"{where}.seconds is required for latency")
        if seconds is not None and not 0 <= seconds <= 3600:
            raise FaultError(f"{where}.seconds must be between 0 and 3600")
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
