"""``conform --cassette DIR``: a recording checked against the contract, offline, for free.

Every recorded exchange of the task routes goes through the same checks as a live ``conform``
run (schemathesis' response checks and conform's own, through `Validator`), into the same
`Report` (summary, JUnit). Then what only a sequence shows: each followed task's life cycle
(`check_life`), its result pictures when they were recorded (`check_picture`), that a request
without a key was refused, that another key could not read a task, and that a submission the
contract allows was accepted (and one it forbids refused). Finally each ``x-assumption`` of the
contract is judged (`assumptions`): confirmed, contradicted (a deviation), or not touched.
No request is sent.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import httpx

from ..conformance.checks import MARKER, POLL, SUBMIT, expected_task_type, register
from ..conformance.client import Answer
from ..conformance.deviations import Report
from ..conformance.lifecycle import LIFECYCLE_CHECKS, Seen, check_life, result_urls
from ..conformance.options import ConformOptions
from ..conformance.pictures import Expected, check_picture
from ..conformance.scenarios import PICTURE
from ..conformance.validation import Validator
from ..contract import load_contract
from ..core.catalogue import Catalogue
from ..errors import EmulatorError
from .assumptions import CONTRADICTS, UNTOUCHED, Verdict, contract_assumptions, judge
from .cassette import Cassette
from .evidence import TERMINAL, Evidence, Followed, Sent, gather

BASE = "http://cassette.invalid"
ASSUMPTION = "x-assumption"


def load(contract_file: Path | None) -> dict[str, Any]:
    if contract_file is None:
        return load_contract()
    import yaml

    loaded: dict[str, Any] = json.loads(
        json.dumps(yaml.safe_load(contract_file.read_text("utf-8")))
    )
    return loaded


def answer_of(sent: Sent) -> Answer:
    """The recorded exchange as conform's `Answer` (httpx objects, no network)."""
    ex = sent.exchange
    url = BASE + ex.path + (f"?{ex.query}" if ex.query else "")
    request = httpx.Request(ex.method, url, headers=ex.request_headers, content=sent.request_body)
    response = None
    if ex.status is not None:
        response = httpx.Response(
            ex.status,
            headers=ex.response_headers,
            content=sent.response_body or b"",
            request=request,
        )
        response.elapsed = datetime.timedelta(seconds=ex.latency)
    return Answer(sent.operation, request, response, ex.error, ex.latency)


class OfflineRun:
    def __init__(self, cassette: Cassette, contract: dict[str, Any], options: ConformOptions):
        self.cassette, self.contract = cassette, contract
        self.report = Report(target=f"the cassette {cassette.directory}")
        contract[MARKER] = True
        register()
        self.validator = Validator(contract, options, self.report)
        self.catalogue = Catalogue.load()
        self.verdicts: list[Verdict] = []

    def run(self) -> Report:
        evidence = gather(self.cassette)
        report = self.report
        if not evidence.sent:
            report.could_not_run = "the cassette holds no exchange of the task routes"
            return report
        for sent in evidence.sent:
            self._exchange(sent)
        self._requests(evidence)
        for task in evidence.tasks.values():
            self._life(task, evidence)
        report.cannot_check(
            "task_finishes", POLL, "a recording does not say how long the client would wait"
        )
        self.verdicts = judge(evidence, contract_assumptions(self.contract))
        for verdict in self.verdicts:
            self._verdict(verdict)
        if report.answered == 0:
            report.could_not_run = (
                f"not one of the {report.requests} recorded exchanges got an answer that could "
                "be checked"
            )
        report.tasks_created = len(evidence.tasks)
        return report

    def _exchange(self, sent: Sent) -> None:
        answer = answer_of(sent)
        ex = sent.exchange
        if answer.response is None:
            self.report.exchange(sent.operation, None)
            self.report.error(f"line {ex.line}: {sent.operation} got no answer: {ex.error}")
            return
        self.report.exchange(sent.operation, ex.status or 0, ex.content_type)
        if sent.operation == SUBMIT:
            if sent.uploaded:
                body = {**(sent.fields or {}), "image": b"(png)"}
                self.validator.validate(answer, body=body, media_type="multipart/form-data")
            elif sent.fields is not None:
                self.validator.validate(answer, body=sent.fields)
            else:
                self.validator.validate(answer)
        else:
            self.validator.validate(answer, path_parameters={"task_id": ex.task_id or ""})

    def _requests(self, evidence: Evidence) -> None:
        """Keys, and whether the service accepted what the contract allows."""
        import jsonschema_rs

        schema = self.contract["paths"]["/v1/images/tasks"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        components = self.contract.get("components", {})
        validator = jsonschema_rs.Draft202012Validator({**schema, "components": components})
        for sent in evidence.sent:
            ex, status = sent.exchange, sent.status
            if status is None:
                continue
            if not ex.keyed:
                if status == 401:
                    self.report.passed("auth_required", sent.operation)
                else:
                    line = f"{sent.operation} without a key answered {status}, not 401"
                    self.report.add("auth_required", sent.operation, self._sample(sent, line))
                continue
            if sent.operation != SUBMIT or sent.uploaded or sent.fields is None:
                continue
            if status in (401, 403, 429) or status >= 500:
                continue
            valid = validator.is_valid(sent.fields)
            if valid and not sent.ok:
                line = f"{SUBMIT} refused a submission the contract allows with {status}"
                self.report.add("positive_data_acceptance", SUBMIT, self._sample(sent, line))
            elif valid:
                self.report.passed("positive_data_acceptance", SUBMIT)
            elif sent.ok:
                problem = next(iter(validator.iter_errors(sent.fields)), None)
                why = problem.message if problem is not None else "?"
                line = f"{SUBMIT} accepted a submission the contract forbids ({why})"
                self.report.add("negative_data_rejection", SUBMIT, self._sample(sent, line))
            else:
                self.report.passed("negative_data_rejection", SUBMIT)

    def _life(self, task: Followed, evidence: Evidence) -> None:
        report = self.report
        for sent in task.foreign:
            if sent.exchange.keyed and sent.status is not None:
                if sent.ok:
                    line = f"a second key could read {task.task_id}, created with another key"
                    report.add("key_isolation", POLL, self._sample(sent, line))
                else:
                    report.passed("key_isolation", POLL)
        ended = False
        for sent in task.polls:
            if sent.task is None and sent.status is not None and not ended and not sent.ok:
                if sent.status not in (429,) and sent.status < 500:
                    line = f"polling {task.task_id} answered {sent.status} before it ended"
                    report.add("task_pollable", POLL, self._sample(sent, line))
            elif sent.task is not None:
                report.passed("task_pollable", POLL)
                ended = ended or sent.task.get("status") in TERMINAL
        polls = [Seen(str(s.envelope), s.task) for s in task.polls if s.task is not None]
        if not polls:
            return
        fields = task.submission.fields
        submitted = task.submission
        assert submitted.task is not None
        task_type = expected_task_type(fields, submitted.uploaded) if fields is not None else None
        findings = check_life(
            task.task_id,
            Seen(str(submitted.envelope), submitted.task),
            polls,
            n=_int((fields or {}).get("n"), 1),
            task_type=task_type,
        )
        last = [s for s in task.polls if s.task is not None][-1]
        for finding in findings:
            report.add(finding.check, POLL, self._sample(last, finding.line))
        failed = {f.check for f in findings}
        unseen = _unseen(task.task_id, polls, fields is not None, task_type)
        for check in LIFECYCLE_CHECKS:
            if check in failed:
                continue
            if check not in unseen:
                report.passed(check, POLL)
            elif unseen[check][0]:
                # Meant to be seen, and the recording does not show it: an error, as live.
                report.could_not_check(check, POLL, unseen[check][1])
            else:
                report.cannot_check(check, POLL, unseen[check][1])
        if polls[-1].task.get("status") == "succeeded":
            self._pictures(task, result_urls(polls[-1].task), evidence)

    def _pictures(self, task: Followed, urls: list[str], evidence: Evidence) -> None:
        fields = task.submission.fields or {}
        try:
            plan = self.catalogue.plan(
                model=str(fields.get("model")),
                size=fields.get("size"),
                aspect_ratio=fields.get("aspect_ratio"),
                quality=fields.get("quality"),
                n=_int(fields.get("n"), None),
                output_format=fields.get("output_format"),
            )
        except (EmulatorError, ValueError, TypeError):
            return  # the catalogue cannot say what it should be
        expected = Expected(plan.output_format, plan.width, plan.height)
        for index, url in enumerate(urls):
            ex = evidence.pictures.get(url)
            if ex is None:
                continue
            data = self.cassette.body(ex.response_body)
            if data is None:
                self.report.error(f"line {ex.line}: the picture's blob is missing or damaged")
                continue
            label = f"picture {index + 1} of {task.task_id}"
            problems = check_picture(label, ex.status, ex.content_type, data, expected)
            for check, problem in problems:
                if problem is None:
                    self.report.passed(check, PICTURE)
                else:
                    answer = Answer(PICTURE, httpx.Request("GET", url), None, None, ex.latency)
                    self.report.add(check, PICTURE, answer.sample(problem))

    def _verdict(self, verdict: Verdict) -> None:
        if verdict.outcome == CONTRADICTS:
            from ..conformance.deviations import Sample

            self.report.add(ASSUMPTION, verdict.name, Sample(line=verdict.line()))
        elif verdict.outcome == UNTOUCHED:
            self.report.cannot_check(ASSUMPTION, verdict.name, "the recordings do not touch it")
        else:
            self.report.passed(ASSUMPTION, verdict.name)

    def _sample(self, sent: Sent, line: str) -> Any:
        return answer_of(sent).sample(f"{line} (cassette line {sent.exchange.line})")

    def text(self) -> str:
        """The summary, then the assumptions and the cassette's warnings."""
        lines = [self.report.summary(), "", "== x-assumption against the recordings"]
        lines += [f"  {verdict.line()}" for verdict in self.verdicts]
        if self.cassette.warnings:
            lines += ["", "== cassette lines skipped"]
            lines += [f"  {warning}" for warning in self.cassette.warnings]
        return "\n".join(lines)


def _unseen(
    task_id: str, polls: list[Seen], readable: bool, task_type: str | None
) -> dict[str, tuple[bool, str]]:
    """The life-cycle checks the recording of one task cannot show, each with whether that is
    an error (the check was due: the task never seen ending) and why. Never a pass: a live run
    counts the count of pictures only for a task that succeeded, and a task that never ends is
    a deviation there (``task_finishes``), which a recording cannot judge."""
    statuses = [p.task.get("status") for p in polls]
    end = next((i for i, status in enumerate(statuses) if status in TERMINAL), None)
    found: dict[str, tuple[bool, str]] = {}
    if end is None:
        why = (
            f"the recording never saw {task_id} end (its last poll says {statuses[-1]!r}): "
            "not whether it stays final, nor its pictures"
        )
        found["terminal_final"] = found["result_count_matches_n"] = (True, why)
    else:
        if end == len(polls) - 1:
            found["terminal_final"] = (
                False,
                f"no poll of {task_id} was recorded after its end: nothing shows it stays final",
            )
        if statuses[end] != "succeeded":
            found["result_count_matches_n"] = (
                False,
                f"{task_id} ended {statuses[end]!r}: no pictures to count",
            )
    if not readable:
        why = f"the submission of {task_id} could not be read: what it asked is unknown"
        found["result_count_matches_n"] = found["task_type_inferred"] = (True, why)
    elif task_type is None:
        found["task_type_inferred"] = (False, f"the submission of {task_id} names no valid type")
    return found


def _int(value: Any, default: Any) -> Any:
    try:
        return default if value is None else int(value)
    except (TypeError, ValueError):
        return default


def check_cassette(
    directory: str | Path,
    *,
    contract_file: Path | None = None,
    max_response_time: float | None = None,
) -> OfflineRun:
    """Check the cassette in ``directory``; the run holds the report and the verdicts."""
    cassette = Cassette.load(directory)
    options = ConformOptions(max_response_time=max_response_time, contract=contract_file)
    run = OfflineRun(cassette, load(contract_file), options)
    run.run()
    return run


__all__ = ["OfflineRun", "answer_of", "check_cassette"]
