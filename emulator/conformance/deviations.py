"""What a conformance run found, and its rendering as text and JUnit XML.

Every deviation is grouped by (check, operation) and named in one line a person understands
("progress went from 60% to 30% between two polls of task_…"), with a few offending exchanges
(the request as curl, the response excerpted). The report also keeps every (check, operation)
that ran, so JUnit has one test case per operation and check, passing or not; the checks that
could not run, and why; and whether the run could happen at all.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .evidence import refusal_of
from .options import EXIT_DEVIATIONS, EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from junitparser import Error, Failure, Skipped, TestCase

#: How many offending exchanges are kept per (check, operation) group.
SAMPLES_PER_GROUP = 3
#: The longest one-line description kept (the detail below it has the rest).
LINE_CHARS = 240

CheckKey = tuple[str, str]


@dataclass(slots=True)
class Sample:
    """One offending exchange."""

    #: One line a person understands.
    line: str
    #: Everything else worth reading (may be several lines, may be empty).
    detail: str = ""
    request: str = ""
    status: int | None = None
    response: str = ""


@dataclass(slots=True)
class Deviation:
    """Every failure of one check on one operation."""

    check: str
    operation: str
    count: int = 0
    samples: list[Sample] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """The outcome of a run."""

    target: str
    deviations: dict[CheckKey, Deviation] = field(default_factory=dict)
    #: Every (check, operation) that ran at least once, passing or not.
    checked: set[CheckKey] = field(default_factory=set)
    #: (check, operation) -> why it could not run this time (deliberately: a flag is missing).
    not_run: dict[CheckKey, str] = field(default_factory=dict)
    #: (check, operation) -> why it was meant to run but could not tell (a 429, no credit, a
    #: task that failed): an error, never a pass.
    unchecked: dict[CheckKey, list[str]] = field(default_factory=dict)
    #: Something could not be checked (a timeout, a phase that broke): exit 1.
    errors: list[str] = field(default_factory=list)
    #: Requests deliberately not sent (budget, safety).
    skipped: list[str] = field(default_factory=list)
    #: Failures dropped as known upstream false positives (contracts/false-positives.toml).
    false_positives: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    #: Exchanges the service answered meaningfully (a 2xx, or a 4xx in JSON other than a 404,
    #: an authentication or a rate-limit refusal): without one, the run checked nothing.
    answered: int = 0
    #: 404s in JSON: meaningful only when the task route's not-found differs from that of a
    #: path no API has (`routes_unproven` False; see `evidence.signature`).
    not_found: int = 0
    routes_unproven: bool = False
    #: The phase conform's own exchanges belong to (schemathesis' say theirs).
    current_phase: str = "preflight"
    #: (phase, "answers" or a refusal kind of `evidence.refusal_of`) -> count.
    phase_answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The same per operation, (phase, operation, "answers" or a refusal kind) -> count: a
    #: phase whose polls were answered may still have had every submission refused.
    operation_answers: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    tasks_created: int = 0
    #: (operation, status) -> answers seen; e.g. 200s of the poll prove links were followed.
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: (schemathesis phase, operation, status) -> answers; polls answered 200 in the stateful
    #: phase prove its links were followed.
    phase_statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    #: Phase -> what happened in it, as printed ("success", "skip", "error: ...").
    phases: dict[str, str] = field(default_factory=dict)
    #: Why the run could not happen or checked nothing (exit 2), else None.
    could_not_run: str | None = None
    elapsed: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- filling ---------------------------------------------------------------------------
    def add(self, check: str, operation: str, sample: Sample) -> None:
        sample.line = _one_line(sample.line)
        with self._lock:
            self.checked.add((check, operation))
            dev = self.deviations.setdefault(
                (check, operation), Deviation(check=check, operation=operation)
            )
            dev.count += 1
            if len(dev.samples) < SAMPLES_PER_GROUP and all(
                s.line != sample.line for s in dev.samples
            ):
                dev.samples.append(sample)

    def passed(self, check: str, operation: str) -> None:
        with self._lock:
            self.checked.add((check, operation))

    def cannot_check(self, check: str, operation: str, why: str) -> None:
        with self._lock:
            if (check, operation) not in self.checked:
                self.not_run[(check, operation)] = why

    def could_not_check(self, check: str, operation: str, why: str) -> None:
        """``check`` was meant to run on ``operation`` but could not tell (an error)."""
        with self._lock:
            whys = self.unchecked.setdefault((check, operation), [])
            if why not in whys:
                whys.append(why)

    def exchange(
        self,
        operation: str,
        status: int | None,
        content_type: str = "",
        body: bytes = b"",
        phase: str | None = None,
    ) -> None:
        """Count one request and its answer (None: no answer). A refusal counts as an answer
        of the API only in JSON: a proxy's or a web server's HTML 404 says nothing about it."""
        with self._lock:
            self.requests += 1
            if status is None:
                return
            self.statuses[(operation, status)] += 1
            phase = phase or self.current_phase
            self.phase_answers[(phase, "answers")] += 1
            self.operation_answers[(phase, operation, "answers")] += 1
            kind = refusal_of(status, body)
            if kind is not None:
                self.phase_answers[(phase, kind)] += 1
                self.operation_answers[(phase, operation, kind)] += 1
            refusal = 400 <= status < 500 and status not in (401, 402, 403, 429)
            if refusal and status == 404 and "json" in content_type.lower():
                self.not_found += 1
            elif 200 <= status < 300 or (refusal and "json" in content_type.lower()):
                self.answered += 1

    @property
    def meaningful(self) -> int:
        """Answers that say something about the API (see `answered`, `not_found`)."""
        return self.answered + (0 if self.routes_unproven else self.not_found)

    def refusals(self, phase: str) -> Counter[str]:
        """Refusals (429, no credit) answered in ``phase``, by kind."""
        return Counter(
            {k: n for (p, k), n in self.phase_answers.items() if p == phase and k != "answers"}
        )

    def operation_refusals(self, phase: str) -> dict[str, tuple[int, Counter[str]]]:
        """Per operation answered in ``phase``: its answers and its refusals by kind."""
        found: dict[str, tuple[int, Counter[str]]] = {}
        for (p, operation, kind), n in self.operation_answers.items():
            if p != phase:
                continue
            answers, refusals = found.get(operation, (0, Counter[str]()))
            if kind == "answers":
                answers += n
            else:
                refusals[kind] += n
            found[operation] = (answers, refusals)
        return found

    def error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    # -- outcome ---------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return (
            not self.deviations
            and not self.errors
            and not self.unchecked
            and self.could_not_run is None
        )

    @property
    def exit_code(self) -> int:
        if self.could_not_run is not None:
            return EXIT_ERROR
        return EXIT_OK if self.ok else EXIT_DEVIATIONS

    def headline(self) -> str:
        if self.could_not_run is not None:
            return f"could not run: {self.could_not_run}"
        if self.ok:
            return "no deviations"
        errors = len(self.errors) + len(self._unchecked_lines())
        return f"{len(self.deviations)} deviation(s), {errors} error(s)"

    def _unchecked_lines(self) -> list[str]:
        """One line per reason: the checks it left unchecked, then why."""
        by_why: dict[str, list[str]] = {}
        for (check, operation), whys in sorted(self.unchecked.items()):
            for why in whys:
                by_why.setdefault(why, []).append(f"{check} @ {operation}")
        return [f"could not check {', '.join(keys)}: {why}" for why, keys in by_why.items()]

    def summary(self) -> str:
        """Readable text: a line per deviation, then the details by check and operation."""
        lines = [
            f"Contract conformance of {self.target}: {self.headline()}",
            f"({self.requests} exchanges, {self.tasks_created} task(s) created, "
            f"{self.elapsed:.1f} s)",
        ]
        if self.phases:
            lines.append("phases: " + "; ".join(f"{p} {s}" for p, s in self.phases.items()))
        if self.deviations:
            lines.append("")
            lines.append("Deviations:")
            for (check, operation), dev in sorted(self.deviations.items()):
                lines.extend(f"  - [{check}] {sample.line}" for sample in dev.samples)
                if dev.count > len(dev.samples):
                    more = dev.count - len(dev.samples)
                    lines.append(f"  - [{check}] ... and {more} more case(s) on {operation}")
        for check in sorted({c for c, _ in self.deviations}):
            lines.append("")
            lines.append(f"== {check}")
            for (c, operation), dev in sorted(self.deviations.items()):
                if c != check:
                    continue
                lines.append(f"  -- {operation} ({dev.count} failing case(s))")
                for sample in dev.samples:
                    lines.append(_indent(sample.line, 6))
                    if sample.detail:
                        lines.append(_indent(sample.detail, 8))
                    if sample.request:
                        lines.append(_indent("request:  " + sample.request, 8))
                    if sample.status is not None or sample.response:
                        status = "" if sample.status is None else f"{sample.status} "
                        lines.append(_indent(f"response: {status}{sample.response}".rstrip(), 8))
        for title, items in (
            ("errors (the run could not check something)", self.errors + self._unchecked_lines()),
            ("not checked", [f"{c} @ {o}: {why}" for (c, o), why in sorted(self.not_run.items())]),
            ("not sent", sorted(set(self.skipped))),
        ):
            if items:
                lines.append("")
                lines.append(f"== {title}")
                lines.extend(_indent(item, 2) for item in items)
        if self.false_positives:
            lines.append("")
            lines.append("== dropped as known false positives (contracts/false-positives.toml)")
            lines.extend(f"  {n} x {key}" for key, n in sorted(self.false_positives.items()))
        return "\n".join(lines)

    def junit(self) -> str:
        """JUnit XML: one test case per (check, operation), passing, failing or skipped."""
        from junitparser import Error, Failure, Skipped, TestSuite

        cases: list[TestCase] = []
        if self.could_not_run is not None:
            cases.append(_case("conform", "run", Error(self.could_not_run[:LINE_CHARS])))
        for check, operation in sorted(self.checked | set(self.not_run) | set(self.unchecked)):
            dev = self.deviations.get((check, operation))
            result: Failure | Skipped | Error | None = None
            whys = self.unchecked.get((check, operation))
            if dev is not None:
                result = Failure(dev.samples[0].line, check)
                result.text = "\n\n".join(_sample_text(s) for s in dev.samples)
            elif whys:
                # Meant to run, could not tell: an error case, never a skipped (green) one.
                result = Error(_one_line("could not check: " + whys[0]))
                result.text = "\n".join(whys)
            elif (check, operation) not in self.checked:
                result = Skipped(self.not_run[(check, operation)])
            cases.append(_case(check, operation, result))
        for i, error in enumerate(self.errors):
            failed = Error(_one_line(error))
            failed.text = error
            cases.append(_case("error", f"error-{i}", failed))
        suite = TestSuite("contract-conformance")
        suite.add_testcases(cases)  # counts the tests, failures, errors and skipped
        suite.time = round(self.elapsed, 3)
        xml: bytes = suite.tostring()  # type: ignore[no-untyped-call]  # junitparser 5.0
        return "<?xml version='1.0' encoding='utf-8'?>\n" + xml.decode("utf-8")

    def write(self, directory: Path) -> None:
        """``junit.xml`` and ``summary.txt`` in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "junit.xml").write_text(self.junit(), "utf-8")
        (directory / "summary.txt").write_text(self.summary() + "\n", "utf-8")


def _case(classname: str, name: str, result: Failure | Skipped | Error | None) -> TestCase:
    from junitparser import TestCase

    case = TestCase(name, classname)
    if result is not None:
        case.result = [result]
    return case


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…"


def _sample_text(sample: Sample) -> str:
    parts = [sample.line]
    if sample.detail:
        parts.append(sample.detail)
    if sample.request:
        parts.append(f"request: {sample.request}")
    if sample.status is not None or sample.response:
        parts.append(
            f"response: {'' if sample.status is None else sample.status} {sample.response}"
        )
    return "\n".join(parts)


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.splitlines() or [""])
