"""What a poll sequence says about a task's durations: intervals, never exact values.

A task is submitted at ``t0`` and polled at ``t1 < t2 < ...``; each answer says its status then.
The end of ``queued`` (``T1``, seconds after ``t0``) lies after the last poll that saw it
queued (the submission counts: its answer is ``queued``) and no later than the first poll that
saw it past ``queued``. The end of the task (``T2``) lies after the last poll that saw it
unfinished and no later than the first that saw it ended. So:

- queued: ``Q = T1`` in ``(last queued, first past queued]``;
- processing: ``P = T2 - T1`` in ``(T2.low - T1.high, T2.high - T1.low]`` (at least 0).

A task still running at its last poll gives a lower bound only (right-censored: high is
infinite). Processing is taken from succeeded tasks only (a failure cuts it short); queued from
any task seen past ``queued`` by processing or success. Times are the cassette's ``t``, the
moment each request was sent; a request's own latency (well under a second against polls 2-5 s
apart) is not spread over the bounds.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from ..core.catalogue import Catalogue
from ..errors import EmulatorError
from .evidence import TERMINAL, Evidence, Followed


@dataclass(frozen=True, slots=True)
class Bracket:
    """low < value <= high (seconds); high may be infinite."""

    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True, slots=True)
class TaskTimes:
    task_id: str
    #: The timing entry the task's durations belong to (``gpt-image-2/1K/low``, a model, "*").
    group: str
    queued: Bracket | None
    processing: Bracket | None


def timing_key(fields: dict[str, Any], catalogue: Catalogue) -> str:
    """The most specific ``timing.toml`` entry a submission's durations are drawn from."""
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        return "*"
    try:
        n = fields.get("n")
        plan = catalogue.plan(
            model=model,
            size=fields.get("size"),
            aspect_ratio=fields.get("aspect_ratio"),
            quality=fields.get("quality"),
            n=None if n is None else int(n),
            output_format=fields.get("output_format"),
        )
    except (EmulatorError, ValueError, TypeError):
        return model  # the catalogue does not know it: its own name
    if plan.family == "gpt":
        return f"{plan.model}/{plan.tier}/{plan.quality}"
    return plan.model


def task_times(task: Followed, group: str) -> TaskTimes | None:
    """The brackets of one followed task, or None when its polls say nothing (or contradict
    each other: a status that went back)."""
    t0 = task.submission.exchange.t
    seen = [(0.0, str((task.submission.task or {}).get("status")))]
    for poll in task.polls:
        if poll.task is not None:
            seen.append((poll.exchange.t - t0, str(poll.task.get("status"))))
    if len(seen) < 2 or any(b[0] < a[0] for a, b in itertools.pairwise(seen)):
        return None
    rank = {"queued": 0, "processing": 1, "succeeded": 2, "failed": 2}
    ranks = [rank.get(status, -1) for _, status in seen]
    if -1 in ranks or ranks != sorted(ranks):
        return None
    last_queued = max((t for t, s in seen if s == "queued"), default=0.0)
    after = [t for t, s in seen if s != "queued" and t > last_queued]
    ended = [t for t, s in seen if s in TERMINAL]
    outcome = seen[-1][1]
    t1 = Bracket(last_queued, after[0]) if after else Bracket(last_queued, math.inf)
    queued = t1 if outcome != "failed" or any(s == "processing" for _, s in seen) else None
    processing = None
    if outcome == "succeeded":
        last_running = max(t for t, s in seen if s not in TERMINAL)
        t2 = Bracket(last_running, ended[0])
        processing = Bracket(max(0.0, t2.low - t1.high), t2.high - t1.low)
    elif outcome == "processing":
        last_running = seen[-1][0]
        processing = Bracket(max(0.0, last_running - t1.high), math.inf)
    return TaskTimes(task.task_id, group, queued, processing)


def gather_times(evidence: Evidence, catalogue: Catalogue) -> list[TaskTimes]:
    out = []
    for task in evidence.tasks.values():
        times = task_times(task, timing_key(task.submission.fields or {}, catalogue))
        if times is not None:
            out.append(times)
    return out


__all__ = ["Bracket", "TaskTimes", "gather_times", "task_times", "timing_key"]
