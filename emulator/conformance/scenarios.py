"""The scenario engine: a few well-chosen tasks, each followed from submission to its end.

Each scenario submits one task, polls it with backoff until it ends (and a few polls more, to
see that the end is final) or the caller's deadline passes, checks the sequence of answers
(`lifecycle`), then fetches every result picture and checks it against the catalogue
(`pictures`). Every answer is also checked against the contract by schemathesis (`Validator`).

Tasks are polled in one loop, each when it is due, so a slow service costs the longest task's
time, not the sum. The image2image scenario uses the first picture an earlier scenario made
(a real, reachable picture on any service) as its reference. Scenarios draw from the run's
task budget in their order, before schemathesis' phases get what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.catalogue import Catalogue, OutputPlan
from .budget import TaskBudget, refused
from .checks import POLL, SUBMIT, expected_task_type, unwrap
from .client import Answer, Client, retry_after
from .deviations import Report
from .evidence import NO_CREDIT, NoCredit
from .harness import reference_picture
from .lifecycle import LIFECYCLE_CHECKS, RANK, TERMINAL, Seen, check_life, progress_of, result_urls
from .options import ConformOptions
from .pictures import MAX_PICTURE_BYTES, PICTURE_CHECKS, Expected, check_picture
from .samples import excerpt
from .scenario_plan import PICTURE, Scenario, fed, plan
from .validation import Validator

#: Polls in a row that may fail (no answer) before a task is given up.
MAX_POLL_ERRORS = 3


@dataclass(slots=True)
class Tracked:
    """A task being followed."""

    scenario: Scenario
    body: dict[str, Any]
    expected: OutputPlan
    task_id: str
    submitted: Seen
    started: float
    next_at: float
    interval: float
    last: Answer
    polls: list[Seen] = field(default_factory=list)
    polls_after_end: int | None = None
    errors: int = 0


class ScenarioRunner:
    def __init__(
        self,
        options: ConformOptions,
        client: Client,
        validator: Validator,
        report: Report,
        budget: TaskBudget,
        catalogue: Catalogue,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options, self.client, self.validator = options, client, validator
        self.report, self.budget, self.catalogue = report, budget, catalogue
        self.sleep, self.clock = sleep, clock
        self.reference: str | None = None
        #: Tasks the scenarios created, in order (the isolation check reads the first).
        self.created: list[str] = []

    def run(self, scenarios: list[Scenario]) -> None:
        pending, active = list(scenarios), list[Tracked]()
        while pending or active:
            #: Scenarios ahead that wait for a picture keep their place in the budget.
            waiting = 0
            for scenario in list(pending):
                if scenario.reference and self.reference is None:
                    if active:
                        waiting += 1  # an earlier task may still make a picture
                        continue
                    pending.remove(scenario)
                    if self.budget.left == 0:
                        self.report.skipped.append(f"scenario {scenario.name} (task budget spent)")
                    else:
                        self.could_not(
                            scenario,
                            "not sent: no reference picture, as no earlier scenario's task "
                            "succeeded",
                        )
                    continue
                left = self.budget.left
                if left is not None and 0 < left <= waiting:
                    continue  # the budget left belongs to earlier scenarios
                pending.remove(scenario)
                tracked = self._submit(scenario)
                if tracked is not None:
                    active.append(tracked)
            if not active:
                continue
            due = min(active, key=lambda t: t.next_at)
            wait = due.next_at - self.clock()
            if wait > 0:
                self.sleep(wait)
            if self._poll(due):
                active.remove(due)
                self._finish(due)

    def could_not(self, scenario: Scenario, why: str) -> None:
        """``scenario`` could not show what it is for: its checks could not check (an error)."""
        text = f"scenario {scenario.name} ({scenario.purpose}): {why}"
        for check, operation in fed(scenario):
            self.report.could_not_check(check, operation, text)

    # -- one task ----------------------------------------------------------------------------
    def _submit(self, scenario: Scenario) -> Tracked | None:
        body = dict(scenario.body)
        if scenario.reference == "image":
            body["image"] = self.reference
        elif scenario.reference == "images":
            body["images"] = [self.reference]
        expected = self.catalogue.plan(
            model=body["model"],
            size=body.get("size"),
            aspect_ratio=body.get("aspect_ratio"),
            quality=body.get("quality"),
            n=body.get("n"),
            output_format=body.get("output_format"),
        )
        if not self.budget.take():
            self.report.skipped.append(f"scenario {scenario.name} (task budget spent)")
            return None
        if scenario.upload:
            fields = {k: str(v) for k, v in body.items()}
            form = {**fields, "image": b"(png)"}
            answer = self.client.send_patiently(
                SUBMIT,
                "POST",
                "/v1/images/tasks",
                headers=self.client.auth(),
                data=fields,
                files={"image": ("reference.png", reference_picture((64, 48)), "image/png")},
                on_limited=lambda a: self.validator.validate(
                    a, body=form, media_type="multipart/form-data"
                ),
            )
            self.validator.validate(answer, body=form, media_type="multipart/form-data")
        else:
            answer = self.client.send_patiently(
                SUBMIT,
                "POST",
                "/v1/images/tasks",
                headers=self.client.auth(),
                json=body,
                on_limited=lambda a: self.validator.validate(a, body=body),
            )
            self.validator.validate(answer, body=body)
        if answer.refusal is not None:
            self.budget.give_back()  # declined: no task was made
            if answer.refusal == NO_CREDIT and not self.created:
                raise NoCredit(
                    f"{SUBMIT} answered {answer.status} to the first valid submission (scenario "
                    f"{scenario.name}): {excerpt(answer.response)}"
                )
            self.could_not(
                scenario, f"not run: its submission answered {answer.status} ({answer.refusal})"
            )
            return None
        if answer.status is None:
            self.report.error(
                f"scenario {scenario.name}: the submission got no answer ({answer.error})"
            )
            return None
        if refused(answer.status):
            self.budget.give_back()
            self.report.add(
                "positive_data_acceptance",
                SUBMIT,
                answer.sample(
                    f"{SUBMIT} refused a valid submission (scenario {scenario.name}) with "
                    f"{answer.status}"
                ),
            )
            return None
        unwrapped = unwrap(answer.json())
        if not 200 <= answer.status < 300 or unwrapped is None:
            return None  # the contract checks above say what is wrong with the answer
        envelope, task = unwrapped
        task_id = str(task.get("task_id"))
        self.created.append(task_id)
        now = self.clock()
        return Tracked(
            scenario=scenario,
            body=body,
            expected=expected,
            task_id=task_id,
            submitted=Seen(envelope, task),
            started=now,
            next_at=now + self.options.poll_interval,
            interval=self.options.poll_interval,
            last=answer,
        )

    def _poll(self, t: Tracked) -> bool:
        """Poll ``t`` once; True when it is done (ended and seen final, gone, or too late)."""
        answer = self.client.send(
            POLL, "GET", f"/v1/images/tasks/{t.task_id}", headers=self.client.auth()
        )
        now = self.clock()
        late = now - t.started > self.options.poll_deadline
        if answer.status is None:
            t.errors += 1
            if t.errors >= MAX_POLL_ERRORS or late:
                self.report.error(f"polling {t.task_id} failed {t.errors} times: {answer.error}")
                return True
            t.next_at = now + t.interval
            return False
        t.errors = 0
        self.validator.validate(answer, path_parameters={"task_id": t.task_id})
        if answer.status == 429 and not late:
            t.next_at = now + retry_after(answer, t.interval)
            return False
        if answer.refusal is not None:
            self.could_not(
                t.scenario,
                f"could not follow {t.task_id}: its polls answered {answer.status} "
                f"({answer.refusal}) until --poll-deadline",
            )
            return True
        unwrapped = unwrap(answer.json()) if 200 <= answer.status < 300 else None
        if unwrapped is None:
            if not 200 <= answer.status < 300:
                when = (
                    "right after it was created" if not t.polls else f"after {len(t.polls)} polls"
                )
                self.report.add(
                    "task_pollable",
                    POLL,
                    answer.sample(f"polling {t.task_id} {when} answered {answer.status}"),
                )
            return True
        self.report.passed("task_pollable", POLL)
        t.last = answer
        t.polls.append(Seen(*unwrapped))
        status = unwrapped[1].get("status")
        if status not in RANK:
            # The contract check named the status; with no known meaning, nothing says when the
            # task ends, so following it further would only wait for the deadline.
            self.report.skipped.append(
                f"polls of {t.task_id} after it answered the undocumented status {status!r}"
            )
            return True
        if status in TERMINAL:
            t.polls_after_end = (
                self.options.polls_after_end if t.polls_after_end is None else t.polls_after_end - 1
            )
            if t.polls_after_end <= 0:
                return True
            t.next_at = now + self.options.poll_interval
            return False
        if late or len(t.polls) >= self.options.max_polls:
            self.report.add(
                "task_finishes",
                POLL,
                answer.sample(
                    f"{t.task_id} was still {status!r} at {progress_of(unwrapped[1])}% "
                    f"{now - t.started:.1f} s and {len(t.polls)} polls after its submission "
                    f"(--poll-deadline {self.options.poll_deadline:g} s, at most "
                    f"{self.options.max_polls} polls)"
                ),
            )
            return True
        t.interval = min(t.interval * self.options.poll_backoff, self.options.poll_max_interval)
        t.next_at = now + t.interval
        return False

    def _finish(self, t: Tracked) -> None:
        if not t.polls:
            return
        findings = check_life(
            t.task_id,
            t.submitted,
            t.polls,
            n=int(t.body.get("n") or 1),
            task_type=expected_task_type(t.body, t.scenario.upload),
        )
        failed = {f.check for f in findings}
        for finding in findings:
            self.report.add(finding.check, POLL, t.last.sample(finding.line))
        succeeded = t.polls[-1].task.get("status") == "succeeded"
        for check in LIFECYCLE_CHECKS:
            # A task that did not succeed says nothing about its count of pictures.
            if check not in failed and (succeeded or check != "result_count_matches_n"):
                self.report.passed(check, POLL)
        if t.polls[-1].task.get("status") in TERMINAL and "task_finishes" not in failed:
            self.report.passed("task_finishes", POLL)
        last = t.polls[-1].task
        if last.get("status") == "succeeded":
            self._pictures(t, result_urls(last))
        elif last.get("status") == "failed":
            # A legitimate end on the real service, but the pictures, their count and what the
            # scenario was for went unseen: an error, not a deviation and never a pass.
            self.could_not(t.scenario, f"its task {t.task_id} ended failed ({_said(last)})")

    def _pictures(self, t: Tracked, urls: list[str]) -> None:
        expected = Expected(t.expected.output_format, t.expected.width, t.expected.height)
        for index, url in enumerate(urls):
            # No key: a result URL is public like a CDN's, and the key must not leak to one.
            answer = self.client.send(
                PICTURE, "GET", url, follow_redirects=True, limit=MAX_PICTURE_BYTES
            )
            label = f"picture {index + 1} of {t.task_id} ({t.scenario.name})"
            limit = self.options.max_response_time
            if limit is not None and answer.response is not None:
                if answer.elapsed > limit:
                    line = f"{label} took {answer.elapsed:.2f} s (--max-response-time {limit:g})"
                    self.report.add("max_response_time", PICTURE, answer.sample(line))
                else:
                    self.report.passed("max_response_time", PICTURE)
            content_type = (
                "" if answer.response is None else answer.response.headers.get("content-type", "")
            )
            data = b"" if answer.response is None else answer.response.content
            for check, problem in check_picture(label, answer.status, content_type, data, expected):
                if problem is None:
                    self.report.passed(check, PICTURE)
                else:
                    self.report.add(check, PICTURE, answer.sample(problem))
            if self.reference is None and answer.status == 200:
                self.reference = url


def _said(task: dict[str, Any]) -> str:
    error = task.get("error")
    if isinstance(error, dict):
        return f"{error.get('code')}: {error.get('message')}"
    return repr(error)


__all__ = ["PICTURE", "PICTURE_CHECKS", "Scenario", "ScenarioRunner", "plan"]
