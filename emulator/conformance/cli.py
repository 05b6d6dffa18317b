"""``python -m emulator conform``: its flags, the environment, what it prints, its exit code."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..contract import contract_path
from .options import (
    ALL_PHASES,
    CHEAPEST_MODEL,
    EXIT_ERROR,
    EXIT_NOT_CONFIGURED,
    ConformOptions,
    rate_gap,
)

INSTALL_HINT = (
    "schemathesis or junitparser is not installed, and conform needs them: "
    "pip install 'image-task-emulator[conform]'"
)


#: The longest any seconds flag may be (a timer or a sleep of 1e300 s overflows), and the run.
MAX_SECONDS = 86_400.0
MAX_RUN_SECONDS = 7 * 86_400.0


def _at_least(
    minimum: float, kind: type[int] | type[float] = float, most: float = MAX_SECONDS
) -> Callable[[str], Any]:
    """A flag's parser: a number of ``kind`` from ``minimum``; seconds (floats) at most
    ``most``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not value >= minimum or value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number >= {minimum:g}, got {text}")
        if kind is float and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:g} seconds, got {text}")
        return value

    return parse


def add_arguments(parser: Any) -> None:
    """The ``conform`` subcommand's flags (argparse)."""
    parser.add_argument("--base-url", dest="base_url", help="service to check (IMAGE_API_BASE_URL)")
    parser.add_argument("--api-key", dest="api_key", help="bearer key (default: IMAGE_API_KEY)")
    parser.add_argument(
        "--second-api-key",
        dest="second_api_key",
        help="another valid key: tasks must be invisible to it (IMAGE_API_SECOND_KEY)",
    )
    parser.add_argument(
        "--allow-generation",
        action="store_true",
        help="also POST submissions (creates billable tasks on a paid service)",
    )
    parser.add_argument(
        "--max-examples", type=_at_least(1, int), default=None, help="examples per operation"
    )
    parser.add_argument(
        "--max-tasks",
        type=_at_least(0, int),
        default=None,
        help="most tasks the whole run creates (3; 0: no cap)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help=f"NanoBanana-family model a careful run submits with ({CHEAPEST_MODEL}); "
        "gpt-image-2 is submitted at its cheapest",
    )
    parser.add_argument(
        "--rate-limit", default=None, help="requests per period, e.g. 2/s (default); '' for none"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the generated data")
    parser.add_argument(
        "--max-response-time",
        type=_at_least(0.001),
        default=None,
        help="seconds every answer must come within (off by default)",
    )
    parser.add_argument(
        "--poll-interval", type=_at_least(0), default=None, help="first poll interval (2 s)"
    )
    parser.add_argument(
        "--poll-deadline",
        type=_at_least(0),
        default=None,
        help="seconds a scenario task may take to finish (300)",
    )
    parser.add_argument(
        "--request-deadline",
        type=_at_least(0.001),
        default=None,
        help="seconds one request may take in all: connect, head and body (60)",
    )
    parser.add_argument(
        "--max-run-time",
        type=_at_least(0, most=MAX_RUN_SECONDS),
        default=None,
        help="seconds the whole run may take; what is left then is not sent (1800; 0: no bound)",
    )
    parser.add_argument(
        "--report",
        dest="report_dir",
        help="directory to write junit.xml and summary.txt in (created; both overwritten)",
    )
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
        type=_at_least(0),
        default=0.0,
        help="seconds to wait for the service to answer at all before checking (a fresh server)",
    )


_FLAGS = (
    "max_examples",
    "max_tasks",
    "model",
    "rate_limit",
    "seed",
    "max_response_time",
    "poll_interval",
    "poll_deadline",
    "request_deadline",
    "max_run_time",
)


def options_from_args(args: Any, environ: dict[str, str]) -> ConformOptions | None:
    """Options from parsed flags and the environment; None when no base URL is known."""
    base_url = args.base_url or environ.get("IMAGE_API_BASE_URL")
    if not base_url:
        return None
    chosen: dict[str, Any] = {
        "base_url": base_url,
        "api_key": args.api_key or environ.get("IMAGE_API_KEY"),
        "second_api_key": args.second_api_key or environ.get("IMAGE_API_SECOND_KEY"),
    }
    for name in _FLAGS:
        value = getattr(args, name)
        if value is not None:
            chosen[name] = value
    if args.contract:
        chosen["contract"] = Path(args.contract)
    if args.phases is not None:
        phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
        if not phases:
            raise ValueError(f"--phases names no phase: give some of {','.join(ALL_PHASES)}")
        unknown = sorted(set(phases) - set(ALL_PHASES))
        if unknown:
            raise ValueError(f"--phases: unknown phase(s) {', '.join(unknown)}")
        chosen["phases"] = phases
    rate_gap(chosen.get("rate_limit"))  # a bad --rate-limit stops here, naming the flag
    if chosen["second_api_key"] and chosen["second_api_key"] == chosen["api_key"]:
        raise ValueError("--second-api-key must be another key than --api-key")
    if args.report_dir is not None:
        _check_report_dir(Path(args.report_dir))
    if args.full:
        return ConformOptions.full(**chosen)
    return ConformOptions(allow_generation=bool(args.allow_generation), **chosen)


def _check_report_dir(directory: Path) -> None:
    """Refuse, before the run, a --report that could not be written after it."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"--report {directory}: exists and is not a directory")
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if directory.exists() else "cannot be created here"
        raise ValueError(f"--report {directory}: the directory {where}")
    for name in ("junit.xml", "summary.txt"):
        inside = directory / name
        if inside.exists() and not inside.is_file():
            raise ValueError(f"--report {directory}: {name} there is not a file")


def _check_model(options: ConformOptions) -> None:
    """A --model the contract does not submit is refused before anything is sent (it used to
    fail after the near misses and scenarios had spent tasks)."""
    from .harness import contract_of, submit_models

    try:
        contract = contract_of(options)
    except Exception:  # a broken contract: the run says so, as "could not run"
        return
    models = submit_models(contract)
    if models and options.model not in models:
        raise ValueError(
            f"--model {options.model!r} is not a model the contract submits; one of: "
            + ", ".join(models)
        )


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
    try:
        options = options_from_args(args, environ)
    except ValueError as exc:
        out(f"conform: {exc}")
        return EXIT_ERROR
    if options is None:
        out(
            "conform: no service to check. Set IMAGE_API_BASE_URL (or pass --base-url URL) and "
            "IMAGE_API_KEY (or --api-key KEY); add --allow-generation to submit tasks."
        )
        return EXIT_NOT_CONFIGURED
    try:
        import junitparser  # noqa: F401  (the report)
        import schemathesis  # noqa: F401
    except ImportError:
        out(f"conform: {INSTALL_HINT}")
        return EXIT_ERROR
    try:
        _check_model(options)
    except ValueError as exc:
        out(f"conform: {exc}")
        return EXIT_ERROR
    from .engine import run_contract

    budget = f"at most {options.max_tasks} task(s)" if options.max_tasks else "no task cap"
    out(
        f"conform: checking {options.base_url} against {options.contract or contract_path()} "
        f"({options.profile}, {budget}, {options.max_examples} examples per operation, "
        f"seed {options.seed})"
    )
    if args.wait and not _wait_for(options.base_url or "", args.wait):
        out(f"conform: could not run: {options.base_url} did not answer within {args.wait:g} s")
        return EXIT_ERROR
    try:
        report = run_contract(options, on_progress=lambda line: out(f"conform: {line}"))
    except Exception as exc:  # a broken contract or settings: say so, distinctly from deviations
        out(f"conform: could not run: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    out(report.summary())
    if args.report_dir:
        try:
            report.write(Path(args.report_dir))
        except OSError as exc:  # checked before the run; the disk may still fill or change
            out(f"conform: the report could not be written: {exc}")
            return EXIT_ERROR
        out(f"conform: report written to {args.report_dir}/junit.xml and summary.txt")
    return report.exit_code
