"""Checks of one task's whole life as a client saw it: the submission, then every poll.

Pure functions of the answers (no I/O), so each rule of SPEC 2.6 is tested on its own:
status never goes back, progress never decreases, a terminal state is final, every answer
uses the submission's envelope and task id, the task type stays what the submission asked,
and a succeeded task has as many pictures as were asked for (n).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from .checks import settled

RANK = {"queued": 0, "processing": 1, "succeeded": 2, "failed": 2}
TERMINAL = ("succeeded", "failed")
_PROGRESS = re.compile(r"^([0-9]{1,3})%$")
#: What must not change once a task has ended.
FINAL_FIELDS = ("status", "progress", "result_url", "metadata", "error")

LIFECYCLE_CHECKS = (
    "status_order",
    "progress_monotone",
    "terminal_final",
    "same_envelope",
    "task_id_stable",
    "task_type_inferred",
    "result_count_matches_n",
)


@dataclass(frozen=True, slots=True)
class Seen:
    """One task answer: its envelope ("wrapped" or "bare") and the task object."""

    envelope: str
    task: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    line: str


def progress_of(task: dict[str, Any]) -> int | None:
    match = _PROGRESS.match(str(task.get("progress", "")))
    return int(match.group(1)) if match else None


def check_life(
    task_id: str,
    submitted: Seen,
    polls: list[Seen],
    *,
    n: int,
    task_type: str | None,
) -> list[Finding]:
    """Every rule broken by the answers ``submitted`` then ``polls`` (in the order received)."""
    findings: list[Finding] = []
    answers = [submitted, *polls]
    for poll in polls:
        if poll.envelope != submitted.envelope:
            findings.append(
                Finding(
                    "same_envelope",
                    f"the submission of {task_id} answered a {_shape(submitted.envelope)} but a "
                    f"poll answered a {_shape(poll.envelope)}",
                )
            )
            break
    for poll in polls:
        if poll.task.get("task_id") != task_id:
            findings.append(
                Finding(
                    "task_id_stable",
                    f"a poll of {task_id} answered task_id {poll.task.get('task_id')!r}",
                )
            )
            break
    findings += _order(task_id, answers)
    findings += _final(task_id, answers)
    if task_type is not None:
        for seen in answers:
            got = _metadata(seen.task).get("task_type")
            if got != task_type:
                when = "the submission" if seen is submitted else "a poll"
                findings.append(
                    Finding(
                        "task_type_inferred",
                        f"{when} of {task_id} says task_type {got!r}; the request makes it "
                        f"{task_type!r}",
                    )
                )
                break
    last = answers[-1].task
    if last.get("status") == "succeeded":
        findings += _results(task_id, last, n)
    return findings


def _order(task_id: str, answers: list[Seen]) -> list[Finding]:
    findings: list[Finding] = []
    status_seen = progress_seen = False
    for before, after in itertools.pairwise(answers):
        a, b = before.task.get("status"), after.task.get("status")
        if not status_seen and a not in TERMINAL and RANK.get(str(b), 9) < RANK.get(str(a), -1):
            status_seen = True
            findings.append(
                Finding(
                    "status_order",
                    f"status went from {a!r} back to {b!r} between two polls of {task_id}",
                )
            )
        p, q = progress_of(before.task), progress_of(after.task)
        if not progress_seen and p is not None and q is not None and q < p:
            progress_seen = True
            findings.append(
                Finding(
                    "progress_monotone",
                    f"progress went from {p}% to {q}% between two polls of {task_id}",
                )
            )
    return findings


def _final(task_id: str, answers: list[Seen]) -> list[Finding]:
    end = next((i for i, s in enumerate(answers) if s.task.get("status") in TERMINAL), None)
    if end is None:
        return []
    ended = answers[end].task
    for later in answers[end + 1 :]:
        changed = [f for f in FINAL_FIELDS if settled(later.task.get(f)) != settled(ended.get(f))]
        if changed:
            first = changed[0]
            return [
                Finding(
                    "terminal_final",
                    f"{task_id} changed after it ended {ended.get('status')!r}: {first} went "
                    f"from {_short(ended.get(first))} to {_short(later.task.get(first))}",
                )
            ]
    return []


def _results(task_id: str, task: dict[str, Any], n: int) -> list[Finding]:
    metadata = _metadata(task)
    count = metadata.get("result_count")
    urls = result_urls(task)
    findings = []
    if count != n:
        findings.append(
            Finding(
                "result_count_matches_n",
                f"{task_id} asked for n={n} picture(s) and succeeded with result_count {count!r}",
            )
        )
    elif len(urls) != n:
        findings.append(
            Finding(
                "result_count_matches_n",
                f"{task_id} asked for n={n} picture(s) and its answer lists {len(urls)} URL(s)",
            )
        )
    return findings


def result_urls(task: dict[str, Any]) -> list[str]:
    """Every result URL of a task answer: ``metadata.result_urls``, else ``result_url``."""
    listed = _metadata(task).get("result_urls")
    if isinstance(listed, list) and listed:
        return [str(u) for u in listed]
    first = task.get("result_url")
    return [str(first)] if isinstance(first, str) and first else []


def _metadata(task: dict[str, Any]) -> dict[str, Any]:
    metadata = task.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _shape(envelope: str) -> str:
    return "wrapped task ({code, message, data})" if envelope == "wrapped" else "bare task"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
