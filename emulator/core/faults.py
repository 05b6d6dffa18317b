"""Fault rules: an ordered list; the first rule that matches a request applies its effect.

Rules are plain data (loadable from TOML, JSON or the control plane; checked and built from
that data by ``emulator.core.fault_parsing``). Whether a rule fires is decided by a seeded draw
per (rule, evaluation), and its ``times`` budget is claimed atomically in the store, so the
same seed and the same request sequence give the same decisions, also across workers sharing
a store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .draws import KeyedDraws

Endpoint = Literal["submit", "poll", "result", "any"]
EffectKind = Literal[
    "fail_task", "partial", "http_error", "latency", "hang", "drop", "malformed", "empty", "respond"
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
    "respond",
)
#: The fields each kind takes besides ``kind`` (one it does not take is refused, never
#: silently ignored: docs/control-plane.md, the contract's effect schemas).
KIND_FIELDS: Mapping[str, tuple[str, ...]] = {
    "fail_task": ("code", "message", "at_progress"),
    "partial": ("images",),
    "http_error": ("status", "code", "message", "retry_after"),
    "latency": ("seconds",),
    "hang": ("seconds",),
    "drop": (),
    "malformed": (),
    "empty": (),
    "respond": ("status", "json", "body", "headers"),
}
#: Effects that change the task's fate; they apply when the task is submitted.
TASK_EFFECTS = frozenset({"fail_task", "partial"})
#: Effects that change an answer the work produced: none exists for an unknown task.
AFTER_EFFECTS = frozenset({"malformed", "empty"})
HTTP_ERROR_STATUSES = (429, 500, 502, 503, 504)


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
    """What a fault rule does to a request it matches (one kind, with its parameters)."""

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
    #: respond: the answer's body, a JSON value or text (at most one), and its headers.
    json: Any = None
    body: str | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class FaultRule:
    """An installed fault: which requests it matches, its effect, how often, how many times."""

    id: str
    effect: Effect
    match: Match = field(default_factory=Match)
    probability: float = 1.0
    #: None: unlimited; otherwise the rule expires after this many hits.
    times: int | None = None
    #: Which installation of the rule this is, given when it is added (`Steering.add_faults`;
    #: "" for one from the settings): a rule replaced under its id, or added again after a
    #: reset restarted the ids, has another, so a test's handle never reads another rule's
    #: hits as its own. Kept by the stores (`stored`), not part of the rule's view.
    serial: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The rule as the control plane shows it (without ``serial``)."""
        data = asdict(self)
        del data["serial"]
        data["match"]["headers"] = dict(self.match.headers)
        if self.effect.headers is not None:
            data["effect"]["headers"] = dict(self.effect.headers)
        return data

    def stored(self) -> dict[str, Any]:
        """The rule as a store keeps it: its view and its ``serial``."""
        return self.to_dict() | {"serial": self.serial}

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
            serial=raw.get("serial", ""),  # a rule stored before serials has none
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
    #: A submission's image count: a partial rule returns fewer, so it does not match (and
    #: spends no hit) when ``n`` is not above its ``images``.
    n: int | None = None
    #: False for a poll of a task that does not exist (or is not the key's): only effects
    #: that come before an answer apply, and only rules that need no task fact match.
    task_known: bool = True


def matches(rule: FaultRule, facts: RequestFacts) -> bool:
    m = rule.match
    if m.endpoint != "any" and m.endpoint != facts.endpoint:
        return False
    if rule.effect.kind in TASK_EFFECTS and facts.endpoint != "submit":
        return False
    images, n = rule.effect.images, facts.n  # partial: fewer than n, or it does not match
    if rule.effect.kind == "partial" and images is not None and n is not None and images >= n:
        return False
    if not facts.task_known and rule.effect.kind in AFTER_EFFECTS:
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
    return KeyedDraws(f"{seed}:fault:{rule.id}:{evaluation}").random() < rule.probability
