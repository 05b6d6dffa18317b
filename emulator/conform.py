"""Run the OpenAPI contract against a service (live URL or in-process ASGI app) with schemathesis.

``python -m emulator conform --base-url URL`` checks any service, including the paid real one,
so the defaults are safe for it: only GET requests unless generation is allowed, positive data
only, a rate limit, a cap on the tasks created, and submissions restricted to the cheapest
model with ``n = 1``. ``--full`` lifts every restriction (for an emulator you run yourself).

Deviations come back grouped by check and operation, each with the offending request (as curl)
and response: see `emulator.deviations`. `emulator.harness` holds the contract narrowing and the
schemathesis hooks that keep a run safe.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contract import contract_path, contracts_dir, load_contract
from .deviations import EXIT_DEVIATIONS, EXIT_OK, Deviation, Explainer, Report, collect
from .harness import TaskCapReached, caused_by_cap, install_hooks, restrict_to_model

#: Exit codes of ``conform`` (EXIT_OK and EXIT_DEVIATIONS come from the run's report).
EXIT_ERROR = 2
EXIT_NOT_CONFIGURED = 3

#: The model a safe run submits with: the lowest tier, enabled on the real service per its
#: document (SPEC 2.3).
CHEAPEST_MODEL = "NanoBanana2-0.5K"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
ALL_PHASES = ("examples", "coverage", "fuzzing", "stateful")


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


# -- the contract as this run sees it ----------------------------------------------------------
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
    before_call = install_hooks(schema, options, report)
    schemathesis.hook(before_call)
    try:
        _execute(from_schema(schema), report, on_progress, Explainer(contract))
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
            collect(event.recorder, report, explain)
        elif isinstance(event, events.NonFatalError):
            if not caused_by_cap(event.value):
                report.errors.append(f"{event.label}: {_error_text(event)}")
        elif isinstance(event, events.FatalError):
            report.errors.append(f"fatal: {event.exception}")
        elif isinstance(event, events.PhaseFinished) and on_progress is not None:
            on_progress(f"phase {event.phase.name.value}: {event.status.value}")


def _load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text("utf-8"))


def _error_text(event: Any) -> str:
    text: str = event.info.format()
    # Keep the head (what happened) and the tail (where, and how to reproduce).
    lines = text.strip().splitlines()
    return "\n".join(lines if len(lines) <= 24 else [*lines[:6], "...", *lines[-16:]])


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
