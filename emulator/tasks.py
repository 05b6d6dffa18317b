"""Tasks and their life cycle.

A task's status is a pure function of its schedule and how much time has elapsed for it, so a
task can never move backwards or leave a terminal state: there is no transition to get wrong.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["queued", "processing", "succeeded", "failed"]
Outcome = Literal["succeeded", "failed"]
TaskType = Literal["text2image", "image2image"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed"})


@dataclass(frozen=True, slots=True)
class Schedule:
    """When the task leaves ``queued``, and when and how it ends (seconds after submission)."""

    queued_s: float
    processing_s: float
    outcome: Outcome = "succeeded"
    #: Elapsed seconds at which the task reaches its outcome. For success it is
    #: queued_s + processing_s; a failure may come earlier (while queued or mid-processing).
    end_s: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    #: Images returned on success (fewer than n for a partial result).
    images: int = 1

    @property
    def ends_at(self) -> float:
        return self.queued_s + self.processing_s if self.end_s is None else self.end_s

    def failing_at(self, progress: int | None, code: str, message: str) -> Schedule:
        """The same schedule, ending ``failed`` at ``progress`` percent (None: while queued)."""
        end = (
            self.queued_s / 2
            if progress is None
            else self.queued_s + self.processing_s * (max(0, min(100, progress)) / 100)
        )
        return dataclasses.replace(
            self, outcome="failed", end_s=end, error_code=code, error_message=message
        )

    def ending_now(
        self, elapsed: float, outcome: Outcome, code: str | None = None, message: str | None = None
    ) -> Schedule:
        """The same schedule, forced to ``outcome`` at ``elapsed`` (used by the control plane)."""
        return dataclasses.replace(
            self, outcome=outcome, end_s=max(0.0, elapsed), error_code=code, error_message=message
        )


@dataclass(frozen=True, slots=True)
class Observation:
    status: Status
    progress: int

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


QUEUED = Observation("queued", 0)


def observe(schedule: Schedule, elapsed: float) -> Observation:
    """Status and progress of a task ``elapsed`` seconds after submission."""
    if elapsed >= schedule.ends_at:
        return Observation(schedule.outcome, 100)
    if elapsed < schedule.queued_s:
        return QUEUED
    fraction = (elapsed - schedule.queued_s) / schedule.processing_s
    return Observation("processing", max(0, min(99, int(fraction * 100))))


def per_poll_elapsed(schedule: Schedule, polls: int, steps: int) -> float:
    """Virtual elapsed time after ``polls`` polls when each poll moves the task one step.

    Poll k of ``steps`` lands at queued + processing * k / steps, so the last step reaches
    the end of processing; a failure scheduled earlier is met on the way.
    """
    if polls <= 0:
        return 0.0
    k = min(polls, steps)
    elapsed = schedule.queued_s + schedule.processing_s * k / steps
    return max(elapsed, schedule.ends_at) if k == steps else elapsed


@dataclass(frozen=True, slots=True)
class Task:
    """Everything the emulator keeps about one accepted task; plain data, serialisable."""

    task_id: str
    #: Fingerprint of the API key that created it (never the key itself).
    owner: str
    #: Clock time of submission (wall seconds, or virtual seconds on the manual clock).
    created_at: float
    task_type: TaskType
    model: str
    prompt: str
    width: int
    height: int
    output_format: str
    n: int
    quality: str | None
    tier: str | None
    aspect_ratio: str | None
    size: str | None
    #: Reference picture URLs as sent (``data:`` URLs shortened).
    references: tuple[str, ...]
    #: True when the emulator holds the first reference picture's bytes (blob keyed by task id).
    has_reference: bool
    #: Seed of this task's images.
    seed: int
    schedule: Schedule
    #: Polls so far (drives the per_poll clock).
    polls: int = 0
    #: The capability in the task's result URLs (SPEC D-14), drawn from ``secrets``, never from
    #: the seed. Empty for a task stored before tokens existed: its results are not served.
    token: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        values = dict(data)
        values["schedule"] = Schedule(**values["schedule"])
        values["references"] = tuple(values["references"])
        return cls(**values)
