"""Run the OpenAPI contract against a service (live URL or in-process ASGI app) with schemathesis.

``python -m emulator conform --base-url URL`` checks any service, including the paid real one,
so the defaults are safe for it: only GET requests unless generation is allowed, positive data
only, a rate limit, a cap on the tasks created, and submissions restricted to the cheapest
model with ``n = 1``. ``--full`` lifts every restriction (for an emulator you run yourself).

Deviations come back grouped by check and operation, each with the offending request (as curl)
and response; `Report` renders them as text and JUnit XML.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from .contract import contract_path, contracts_dir, load_contract

#: Exit codes of ``conform``.
EXIT_OK = 0
EXIT_DEVIATIONS = 1
EXIT_ERROR = 2
EXIT_NOT_CONFIGURED = 3

#: The model a safe run submits with: the lowest tier, enabled on the real service per its
#: document (SPEC 2.3).
CHEAPEST_MODEL = "NanoBanana2-0.5K"
SUBMIT = ("POST", "/v1/images/tasks")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
ALL_PHASES = ("examples", "coverage", "fuzzing", "stateful")
#: How many offending request/response pairs are kept per (check, operation) group.
SAMPLES_PER_GROUP = 3
_BODY_EXCERPT = 600


class TaskCapReached(RuntimeError):
    """Raised instead of sending a submission once the run has created its allowance."""


@dataclass(frozen=True, slots=True)
class ConformOptions:
    """What to check and how carefully. The defaults are safe for a paid service."""

    base_url: str | None = None
    api_key: str | None = None
    #: An ASGI app to check in-process instead of ``base_url`` (tests).
    app: Any = None
    contract: Path | None = None
    allow_generation: bool = False
    #: Send schema-violating data too (negative mode). Off for a paid service.
    negative: bool = False
    #: Submit with every model and field; off: only `model` with n = 1, JSON only.
    all_models: bool = False
    model: str = CHEAPEST_MODEL
    #: Submissions sent at most (0: no cap).
    max_tasks: int = 3
    max_examples: int = 5
    #: schemathesis rate limit, e.g. "2/s"; None: unlimited.
    rate_limit: str | None = "2/s"
    phases: tuple[str, ...] = ("examples", "fuzzing", "stateful")
    seed: int = 20261125
    workers: int = 1
    request_timeout: float = 30.0
    #: Extra schemathesis settings (same keys as schemathesis.toml), merged over the file's.
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def full(cls, **kwargs: Any) -> ConformOptions:
        """Every phase, check, model and mode, no caps: for an emulator you run yourself."""
        settings: dict[str, Any] = {
            "allow_generation": True,
            "negative": True,
            "all_models": True,
            "max_tasks": 0,
            "rate_limit": None,
            "phases": ALL_PHASES,
            "max_examples": 25,
        }
        settings.update(kwargs)
        return cls(**settings)


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


# -- the contract as this run sees it ----------------------------------------------------------
def restrict_to_model(contract: dict[str, Any], model: str) -> dict[str, Any]:
    """The contract narrowed so schemathesis submits only ``model`` with ``n = 1`` in JSON.

    A paid service then never gets a bigger or pricier task than the cheapest one; the
    multipart form (file uploads) and examples of other models are dropped.
    """
    narrowed = copy.deepcopy(contract)
    schemas = narrowed["components"]["schemas"]
    branches = [
        ref["$ref"].rsplit("/", 1)[-1]
        for ref in schemas["SubmitRequest"]["oneOf"]
        if model in schemas[ref["$ref"].rsplit("/", 1)[-1]]["properties"]["model"]["enum"]
    ]
    if not branches:
        raise ValueError(f"model {model!r} is not in the contract")
    branch = schemas[branches[0]]
    branch["properties"]["model"]["enum"] = [model]
    branch["properties"]["n"] = {"type": "integer", "enum": [1]}
    branch["required"] = sorted({*branch["required"], "n"})
    schemas["SubmitRequest"] = {"$ref": f"#/components/schemas/{branches[0]}"}
    content = narrowed["paths"]["/v1/images/tasks"]["post"]["requestBody"]["content"]
    content.pop("multipart/form-data", None)
    examples = content["application/json"].get("examples", {})
    for name in [n for n, ex in examples.items() if ex["value"].get("model") != model]:
        del examples[name]
    return narrowed


def _settings(options: ConformOptions) -> dict[str, Any]:
    """schemathesis settings: contracts/schemathesis.toml, then this run's choices."""
    path = contracts_dir() / "schemathesis.toml"
    data: dict[str, Any] = tomllib.loads(path.read_text("utf-8")) if path.exists() else {}
    chosen = set(options.phases)
    if not options.allow_generation:
        chosen.discard("stateful")  # its links start at the submission, which is left out
    phases = {name: {"enabled": name in chosen} for name in ALL_PHASES}
    data.update(
        {
            "seed": options.seed,
            "workers": options.workers,
            "request-timeout": options.request_timeout,
            "phases": _merge(data.get("phases", {}), phases),
            "generation": _merge(
                data.get("generation", {}),
                {
                    "max-examples": options.max_examples,
                    "mode": "all" if options.negative else "positive",
                },
            ),
        }
    )
    if options.rate_limit:
        data["rate-limit"] = options.rate_limit
    if options.api_key:
        data["headers"] = {**data.get("headers", {}), "Authorization": f"Bearer {options.api_key}"}
    return _merge(data, options.overrides)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# -- running ------------------------------------------------------------------------------------
def run_contract(
    options: ConformOptions, on_progress: Callable[[str], None] | None = None
) -> Report:
    """Run the contract against ``options.app`` or ``options.base_url`` and report deviations."""
    import schemathesis
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import from_schema
    from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

    target = options.base_url or "the in-process app"
    report = Report(target=target)
    started = time.monotonic()
    config = SchemathesisConfig.from_dict(_settings(options))
    contract = (
        json.loads(json.dumps(_load_yaml(options.contract)))
        if options.contract
        else load_contract()
    )
    schemas = contract.get("components", {}).get("schemas", {})
    if not options.all_models and "SubmitRequest" in schemas:
        contract = restrict_to_model(contract, options.model)
    schema = schemathesis.openapi.from_dict(contract, config=config)
    if options.app is not None:
        schema.app = options.app
    if options.base_url:
        schema.config.update(base_url=options.base_url.rstrip("/"))
    elif options.app is not None:
        schema.config.update(base_url="http://127.0.0.1")
    if not options.allow_generation:
        # Read-only: nothing that creates, changes or deletes anything is sent.
        schema = schema.exclude(method=list(WRITE_METHODS))  # type: ignore[assignment]
    before_call = _install_hooks(schema, options, report)
    schemathesis.hook(before_call)
    try:
        _execute(from_schema(schema), report, on_progress, _Explainer(contract))
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(before_call)
    report.elapsed = time.monotonic() - started
    return report


def _execute(
    engine: Any,
    report: Report,
    on_progress: Callable[[str], None] | None,
    explain: Callable[[bytes], str],
) -> None:
    from schemathesis.engine import events

    for event in engine.execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            _collect(event.recorder, report, explain)
        elif isinstance(event, events.NonFatalError):
            if not _caused_by_cap(event.value):
                report.errors.append(f"{event.label}: {_error_text(event)}")
        elif isinstance(event, events.FatalError):
            report.errors.append(f"fatal: {event.exception}")
        elif isinstance(event, events.PhaseFinished) and on_progress is not None:
            on_progress(f"phase {event.phase.name.value}: {event.status.value}")


def _caused_by_cap(exc: BaseException | None) -> bool:
    """Whether ``exc`` is (or wraps, as schemathesis' hook errors do) a `TaskCapReached`."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TaskCapReached):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text("utf-8"))


def _error_text(event: Any) -> str:
    text: str = event.info.format()
    # Keep the head (what happened) and the tail (where, and how to reproduce).
    lines = text.strip().splitlines()
    return "\n".join(lines if len(lines) <= 24 else [*lines[:6], "...", *lines[-16:]])


def _install_hooks(schema: Any, options: ConformOptions, report: Report) -> Callable[..., None]:
    """Install this run's hooks; returns the global one, to unregister after the run."""
    from schemathesis.transport.serialization import Binary

    lock = threading.Lock()
    picture = _reference_picture()

    known = _false_positives()

    @schema.hook  # type: ignore[untyped-decorator]
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        operation_id = case.operation.definition.raw.get("operationId")
        media_type = (case.media_type or "").split(";")[0]
        for entry in known:
            if (
                entry["check"] in failure.checks
                and entry["operation-id"] == operation_id
                and entry["media-type"] == media_type
                and entry["message"] in failure.message
            ):
                with lock:
                    report.false_positives[f"{entry['check']} @ {operation_id} ({media_type})"] += 1
                return False
        return True

    @schema.hook  # type: ignore[untyped-decorator]
    def map_case(context: Any, case: Any) -> Any:
        # schemathesis fills a `format: binary` part with random bytes; the contract says the
        # `image` file is a real picture, so schema-valid cases get one.
        body = case.body
        if (
            isinstance(body, dict)
            and isinstance(body.get("image"), Binary | bytes)
            and (case.media_type or "").startswith("multipart/")
            and not _is_negative(case)
        ):
            body["image"] = Binary(picture)
        return case

    def before_call(context: Any, case: Any, kwargs: Any) -> None:
        # schemathesis dispatches before_call only globally: act on this run's schema only.
        if getattr(case.operation, "schema", None) is not schema:
            return
        with lock:
            report.requests += 1
            if (case.method.upper(), case.path) != SUBMIT:
                return
            if options.max_tasks and report.tasks_created >= options.max_tasks:
                report.skipped.append(
                    f"submissions beyond the cap of {options.max_tasks} task(s) (--max-tasks)"
                )
                raise TaskCapReached(f"the run may create at most {options.max_tasks} tasks")
            report.tasks_created += 1

    return before_call


def _false_positives() -> list[dict[str, str]]:
    path = contracts_dir() / "false-positives.toml"
    if not path.exists():
        return []
    entries: list[dict[str, str]] = tomllib.loads(path.read_text("utf-8"))["false-positive"]
    return entries


def _is_negative(case: Any) -> bool:
    meta = getattr(case, "meta", None)
    generation = getattr(meta, "generation", None)
    mode = getattr(generation, "mode", None)
    return bool(getattr(mode, "is_negative", False))


def _reference_picture() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


class _Explainer:
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


def _collect(recorder: Any, report: Report, explain: Callable[[bytes], str]) -> None:
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


# -- command line -------------------------------------------------------------------------------
def add_arguments(parser: Any) -> None:
    """The ``conform`` subcommand's flags (argparse)."""
    parser.add_argument("--base-url", dest="base_url", help="service to check (IMAGE_API_BASE_URL)")
    parser.add_argument("--api-key", dest="api_key", help="bearer key (default: IMAGE_API_KEY)")
    parser.add_argument(
        "--allow-generation",
        action="store_true",
        help="also POST submissions (creates billable tasks on a paid service)",
    )
    parser.add_argument("--max-examples", type=int, default=None, help="examples per operation")
    parser.add_argument("--max-tasks", type=int, default=None, help="cap on tasks created (3)")
    parser.add_argument("--model", default=None, help=f"model to submit with ({CHEAPEST_MODEL})")
    parser.add_argument(
        "--rate-limit", default=None, help="requests per period, e.g. 2/s (default); '' for none"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the generated data")
    parser.add_argument("--report", dest="report_dir", help="write junit.xml and summary.txt here")
    parser.add_argument(
        "--full",
        action="store_true",
        help="every phase, check, model and negative data, no caps (your own emulator only)",
    )
    parser.add_argument("--contract", help="contract file (default: the packaged real-API one)")
    parser.add_argument(
        "--phases", help=f"comma-separated subset of {','.join(ALL_PHASES)} (default: by mode)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for the service to answer at all before checking (a fresh server)",
    )


def options_from_args(args: Any, environ: dict[str, str]) -> ConformOptions | None:
    """Options from parsed flags and the environment; None when no base URL is known."""
    base_url = args.base_url or environ.get("IMAGE_API_BASE_URL")
    if not base_url:
        return None
    chosen: dict[str, Any] = {
        "base_url": base_url,
        "api_key": args.api_key or environ.get("IMAGE_API_KEY"),
    }
    for name in ("max_examples", "max_tasks", "model", "rate_limit", "seed"):
        value = getattr(args, name)
        if value is not None:
            chosen[name] = value
    if args.contract:
        chosen["contract"] = Path(args.contract)
    if args.phases:
        chosen["phases"] = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    if args.full:
        return ConformOptions.full(**chosen)
    return ConformOptions(allow_generation=bool(args.allow_generation), **chosen)


def _wait_for(base_url: str, seconds: float) -> bool:
    """Whether ``base_url`` answers any HTTP request within ``seconds`` (readiness, bounded)."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(base_url, timeout=2.0)
            return True
        except httpx.TransportError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def main(args: Any, environ: dict[str, str], out: Callable[[str], None] = print) -> int:
    """Run ``conform`` from parsed flags; returns the exit code."""
    options = options_from_args(args, environ)
    if options is None:
        out(
            "conform: no service to check. Set IMAGE_API_BASE_URL (or pass --base-url URL) and "
            "IMAGE_API_KEY (or --api-key KEY); add --allow-generation to submit tasks."
        )
        return EXIT_NOT_CONFIGURED
    mode = (
        "full"
        if options.negative
        else ("generation allowed" if options.allow_generation else "GET only")
    )
    out(
        f"conform: checking {options.base_url} against {options.contract or contract_path()} "
        f"({mode}, {options.max_examples} examples per operation, seed {options.seed})"
    )
    if args.wait and not _wait_for(options.base_url or "", args.wait):
        out(f"conform: {options.base_url} did not answer within {args.wait:g} s")
        return EXIT_ERROR
    try:
        report = run_contract(options, on_progress=lambda line: out(f"conform: {line}"))
    except Exception as exc:  # a broken contract or settings: say so, distinctly from deviations
        out(f"conform: could not run: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    out(report.summary())
    if args.report_dir:
        report.write(Path(args.report_dir))
        out(f"conform: report written to {args.report_dir}/junit.xml and summary.txt")
    return report.exit_code


__all__: Sequence[str] = [
    "CHEAPEST_MODEL",
    "EXIT_DEVIATIONS",
    "EXIT_ERROR",
    "EXIT_NOT_CONFIGURED",
    "EXIT_OK",
    "ConformOptions",
    "Deviation",
    "Report",
    "TaskCapReached",
    "add_arguments",
    "main",
    "options_from_args",
    "restrict_to_model",
    "run_contract",
]
