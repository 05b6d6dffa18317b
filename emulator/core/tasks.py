"""Tasks and their life cycle.

A task's status is a pure function of its schedule and how much time has elapsed for it, so a
task can never move backwards or leave a terminal state: there is no transition to get wrong.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .draws import Draws
from .frozen import builder

if TYPE_CHECKING:
    from .faults import FaultRule

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
    #: On the per_poll clock, the polls from queued to the end (``per_poll_steps`` when it was
    #: submitted: a later change of the setting applies to new tasks only); None on the time
    #: clocks (real, manual), where elapsed clock time moves the task.
    steps: int | None = None

    @property
    def ends_at(self) -> float:
        return self.queued_s + self.processing_s if self.end_s is None else self.end_s

    @property
    def end_poll(self) -> int | None:
        """On the per_poll clock, the poll count at which the task reaches its outcome: the
        least k with ``per_poll_elapsed(self, k, steps) >= ends_at`` (0: ended from the start).
        A store compares a counter with it instead of repeating the arithmetic."""
        if self.steps is None:
            return None
        low, high = 0, self.steps  # per_poll_elapsed rises with k and ends the task at steps
        while low < high:
            middle = (low + high) // 2
            if per_poll_elapsed(self, middle, self.steps) >= self.ends_at:
                high = middle
            else:
                low = middle + 1
        return low

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
    """A task's status and progress (percent) as seen at one moment."""

    status: Status
    progress: int

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


QUEUED = Observation("queued", 0)
#: The two ends, made once: every poll of a finished task observes one of them, and a frozen
#: dataclass costs about 1 µs to make (its fields set through ``object.__setattr__``).
SUCCEEDED = Observation("succeeded", 100)
FAILED = Observation("failed", 100)


def observe(schedule: Schedule, elapsed: float) -> Observation:
    """Status and progress of a task ``elapsed`` seconds after submission."""
    if elapsed >= schedule.ends_at:
        outcome = schedule.outcome
        if outcome == "succeeded":
            return SUCCEEDED
        return FAILED if outcome == "failed" else Observation(outcome, 100)
    if elapsed < schedule.queued_s:
        return QUEUED
    fraction = (elapsed - schedule.queued_s) / schedule.processing_s
    # 1e-6 of a percent: poll k of a per_poll task's n steps lands at queued + processing * k / n,
    # and that float arithmetic can come back a hair under k * 100 / n (1 % shown for 2 %). Its
    # error is ~1e-14 % x (queued + processing) / processing, inside 1e-6 % while the queue is
    # under 10^7 times the processing; on a real clock 1e-6 % earlier is no visible change.
    return Observation("processing", max(0, min(99, int(fraction * 100 + 1e-6))))


def fate(schedule: Schedule, rng: Draws, fault: FaultRule | None, failure_rate: float) -> Schedule:
    """``schedule`` as a fault rule (fail_task, partial) or the failure rate decides it, at
    submission: nothing that changes later can change a task's fate."""
    effect = fault.effect if fault else None
    if effect is not None and effect.kind == "fail_task":
        return schedule.failing_at(
            effect.at_progress, effect.code or "upstream_error", effect.message or ""
        )
    if effect is not None and effect.kind == "partial" and effect.images is not None:
        return dataclasses.replace(schedule, images=max(1, min(schedule.images, effect.images)))
    # Drawn even at rate 0 so the same seed gives the same schedules at any rate.
    roll, at = rng.random(), rng.randint(0, 99)
    if roll < failure_rate:
        return schedule.failing_at(
            at, "upstream_error", "the upstream model failed to generate the image"
        )
    return schedule


def elapsed(task: Task, now: float) -> float:
    """How far into its schedule ``task`` is at clock time ``now``: on the per_poll clock its
    own polls and steps decide, so nothing but a poll (or a forced outcome) moves it."""
    schedule = task.schedule
    if schedule.steps is not None:
        return per_poll_elapsed(schedule, task.polls, schedule.steps)
    return now - task.created_at


def has_ended(task: Task, now: float) -> bool:
    """Whether ``task`` has reached its outcome at clock time ``now`` (the check every store
    makes before it settles, removes or forces a task)."""
    return elapsed(task, now) >= task.schedule.ends_at


def ended_at(task: Task) -> float:
    """Clock time at which ``task`` reaches its outcome (what expiry and the cap count from).

    On a time clock its schedule says so at submission; on the per_poll clock only the poll
    that ends it does (``finished_at``): until then it is infinity, so an unpolled task is
    never taken for finished.
    """
    if task.schedule.steps is None:
        return task.created_at + task.schedule.ends_at
    return math.inf if task.finished_at is None else task.finished_at


def outlived(task: Task, ttl: float, now: float) -> bool:
    """Whether ``task`` ended at least ``ttl`` seconds before ``now`` by its ``ended_at`` (a
    ttl of 0 or less keeps every task): the time part of the expiry rule, which
    ``usecases/poll.Tasks.is_expired`` completes by observing the task terminal."""
    return ttl > 0 and ended_at(task) + ttl <= now


def images_returned(task: Task) -> int:
    """Images an ended task returned: what it is billed for (none when it failed)."""
    return task.schedule.images if task.schedule.outcome == "succeeded" else 0


def per_poll_elapsed(schedule: Schedule, polls: int, steps: int) -> float:
    """Virtual elapsed time after ``polls`` polls when each poll moves the task one step.

    Poll k of ``steps`` lands at queued + processing * k / steps, so the last step reaches
    the end of processing; a failure scheduled earlier is met on the way.
    """
    if polls <= 0:
        return 0.0
    k = min(polls, steps)
    # processing * (k / steps), as `Schedule.failing_at` computes processing * (at / 100):
    # when k / steps is at / 100 both fractions are the same float, so the poll that reaches a
    # failure point meets it (processing * k / steps could land an ulp short: one poll late).
    elapsed = schedule.queued_s + schedule.processing_s * (k / steps)
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
    #: On the per_poll clock, the clock time of the poll (or forced outcome) that ended it;
    #: None before, and always on the time clocks, whose schedule says when they end.
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        values = dict(data)
        values["schedule"] = Schedule(**values["schedule"])
        values["references"] = tuple(values["references"])
        return cls(**values)


#: ``Task(...)`` and ``Schedule(...)`` at the cost of plain classes, for every submission and
#: poll (``emulator.core.frozen``): what they make is a `Task`, a `Schedule`.
TaskBuilder = builder(Task)
ScheduleBuilder = builder(Schedule)
