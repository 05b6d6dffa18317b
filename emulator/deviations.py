"""What a contract run found: deviations grouped by check and operation, and their rendering.

Each (check, operation) group keeps its count and a few offending exchanges (the request as curl,
the response excerpted); `Report` renders them as text and JUnit XML and writes both files.
`collect` fills a report from a finished schemathesis scenario.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

#: Exit codes of a run's report (``conform`` adds its own for a run that could not happen).
EXIT_OK = 0
EXIT_DEVIATIONS = 1

#: How many offending request/response pairs are kept per (check, operation) group.
SAMPLES_PER_GROUP = 3
_BODY_EXCERPT = 600


@dataclass(slots=True)
class Sample:
    """One offending exchange."""

    message: str
    request: str
    status: int | None
    response: str


@dataclass(slots=True)
class Deviation:
    """Every failure of one check on one operation."""

    check: str
    operation: str
    title: str
    count: int = 0
    samples: list[Sample] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """The outcome of a run: deviations by (check, operation), plus run errors."""

    target: str
    deviations: dict[tuple[str, str], Deviation] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: Failures dropped as known upstream false positives (contracts/false-positives.toml).
    false_positives: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    tasks_created: int = 0
    #: (operation, status) -> answers seen; e.g. 200s of the poll prove links were followed.
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.deviations and not self.errors

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_DEVIATIONS

    def add(self, check: str, operation: str, title: str, sample: Sample) -> None:
        dev = self.deviations.setdefault(
            (check, operation), Deviation(check=check, operation=operation, title=title)
        )
        dev.count += 1
        if len(dev.samples) < SAMPLES_PER_GROUP and all(
            s.message != sample.message or s.status != sample.status for s in dev.samples
        ):
            dev.samples.append(sample)

    def summary(self) -> str:
        """Readable text: every deviation grouped by check, then operation."""
        lines = [
            f"Contract conformance of {self.target}: "
            + (
                "no deviations"
                if self.ok
                else f"{len(self.deviations)} deviation(s), {len(self.errors)} error(s)"
            ),
            f"({self.requests} checked exchanges, {self.tasks_created} task(s) submitted, "
            f"{self.elapsed:.1f} s)",
        ]
        for check in sorted({c for c, _ in self.deviations}):
            lines.append("")
            lines.append(f"== {check}")
            for (c, operation), dev in sorted(self.deviations.items()):
                if c != check:
                    continue
                lines.append(f"  -- {operation}: {dev.title} ({dev.count} failing case(s))")
                for sample in dev.samples:
                    lines.append(_indent(sample.message, 6))
                    lines.append(_indent("request:  " + sample.request, 6))
                    lines.append(
                        _indent(f"response: {sample.status} {sample.response}".rstrip(), 6)
                    )
        if self.errors:
            lines.append("")
            lines.append("== errors (the run could not check something)")
            lines.extend(_indent(e, 2) for e in self.errors)
        if self.skipped:
            lines.append("")
            lines.append("== not sent")
            lines.extend(_indent(s, 2) for s in sorted(set(self.skipped)))
        if self.false_positives:
            lines.append("")
            lines.append("== dropped as known false positives (contracts/false-positives.toml)")
            lines.extend(f"  {n} x {key}" for key, n in sorted(self.false_positives.items()))
        return "\n".join(lines)

    def junit(self) -> str:
        """JUnit XML: one test case per (check, operation) that failed, one per error."""
        suite = ElementTree.Element(
            "testsuite",
            name="contract-conformance",
            tests=str(max(1, len(self.deviations) + len(self.errors))),
            failures=str(len(self.deviations)),
            errors=str(len(self.errors)),
            time=f"{self.elapsed:.3f}",
        )
        if self.ok:
            ElementTree.SubElement(suite, "testcase", classname="contract", name=self.target)
        for (check, operation), dev in sorted(self.deviations.items()):
            case = ElementTree.SubElement(suite, "testcase", classname=check, name=operation)
            failure = ElementTree.SubElement(case, "failure", message=dev.title, type=check)
            failure.text = "\n\n".join(
                f"{s.message}\nrequest: {s.request}\nresponse: {s.status} {s.response}"
                for s in dev.samples
            )
        for i, error in enumerate(self.errors):
            case = ElementTree.SubElement(suite, "testcase", classname="error", name=f"error-{i}")
            ElementTree.SubElement(case, "error", message=error.splitlines()[0][:200]).text = error
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)

    def write(self, directory: Path) -> None:
        """``junit.xml`` and ``summary.txt`` in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "junit.xml").write_text(self.junit(), "utf-8")
        (directory / "summary.txt").write_text(self.summary() + "\n", "utf-8")


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.splitlines() or [""])


class Explainer:
    """Names what is wrong with a task-route answer: schemathesis reports a failed ``oneOf``
    (wrapped or bare task) only as "not valid under any of the given schemas".
    """

    def __init__(self, contract: dict[str, Any]) -> None:
        self.components = contract.get("components", {})

    def __call__(self, body: bytes) -> str:
        from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

        schemas = self.components.get("schemas", {})
        try:
            data = json.loads(body)
        except ValueError:
            return ""
        if not isinstance(data, dict) or "Task" not in schemas:
            return ""
        name = "Task" if "task_id" in data else "TaskEnvelope"
        validator = Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": self.components}
        )
        problems = [
            f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in validator.iter_errors(data)
        ]
        return f"as {name}: " + "; ".join(problems[:5]) if problems else ""


def collect(recorder: Any, report: Report, explain: Callable[[bytes], str]) -> None:
    for case_id, interaction in recorder.interactions.items():
        node = recorder.cases.get(case_id)
        if node is not None and interaction.response is not None:
            report.statuses[(node.value.operation.label, interaction.response.status_code)] += 1
    for case_id, checks in recorder.checks.items():
        for check in checks:
            info = check.failure_info
            if info is None:
                continue
            node = recorder.cases.get(case_id)
            operation = node.value.operation.label if node is not None else "?"
            interaction = recorder.interactions.get(case_id)
            response = interaction.response if interaction is not None else None
            failure = info.failure
            message = f"{failure.title}: {failure.message}".strip()
            if (
                check.name == "response_schema_conformance"
                and response is not None
                and 200 <= response.status_code < 300
            ):
                detail = explain(response.content or b"")
                message = f"{message}\n{detail}" if detail else message
            report.add(
                check.name,
                operation,
                failure.title,
                Sample(
                    message=message,
                    request=info.code_sample,
                    status=response.status_code if response is not None else None,
                    response=_excerpt(response),
                ),
            )


def _excerpt(response: Any) -> str:
    if response is None:
        return "(no response)"
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    body: bytes = response.content or b""
    if content_type.startswith(("application/json", "text/")) or not body:
        text = body.decode("utf-8", "replace")
        if len(text) > _BODY_EXCERPT:
            text = text[:_BODY_EXCERPT] + f"... ({len(body)} bytes)"
        return f"[{content_type or 'no content-type'}] {text}"
    return f"[{content_type}] ({len(body)} bytes)"
