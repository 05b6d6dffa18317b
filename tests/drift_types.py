"""What a deviating service of tests/drifts.py is (`Drift`), what a service conform cannot judge
must make it say (`Blind`), and the names of the causes of the conform issue each drift stands
for; the tables are in tests/drifts_in_answers.py, tests/drifts_in_requests.py and
tests/drifts.py (`BLIND`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp


@dataclass(frozen=True, slots=True)
class Drift:
    name: str
    #: Which cause of the conform issue it stands for.
    cause: str
    #: A fresh deviating app (state of a deviation, e.g. polls counted, is per app).
    build: Callable[[], ASGIApp]
    #: The check that must report it, and a fragment of the one-line description.
    check: str
    text: str
    #: Extra conform flags the deviation needs to be visible.
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Blind:
    """A service conform cannot judge (tests/drift_blind.py): what it must say instead."""

    name: str
    build: Callable[[], ASGIApp]
    #: The exit code: 1 (could not check something, an error) or 2 (could not run).
    exit: int
    #: A fragment of the error or of the could-not-run reason.
    text: str
    args: tuple[str, ...] = ()


LIFE = "life cycle across answers"
PICTURES = "result pictures"
NEAR = "near misses"
ERRORS = "error bodies and headers"
KEYS = "keys and latency"
SCHEMA = "one answer off the schema"
POLL = "GET /v1/images/tasks/{task_id}"
SUBMIT = "POST /v1/images/tasks"
