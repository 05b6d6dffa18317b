"""The recording commands' flags and what runs them.

``serve --upstream URL --record DIR`` and ``serve --replay DIR`` (flags added to ``serve``),
``conform --cassette DIR`` (a flag added to ``conform``), ``calibrate DIR -o FILE`` and
``parity DIR --against URL`` (commands of their own).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2
#: serve's flags that set the emulator's behaviour: a recorder or a replay has none of it.
EMULATOR_ONLY = (
    "seed",
    "time_scale",
    "clock",
    "envelope",
    "public_base_url",
    "failure_rate",
    "fault_file",
    "admin_token",
    "store",
    "state_dir",
    "store_prefix",
    "redis_timeout",
)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds in (0, 3600], got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000000, got {value}")
    return value


def add_serve_arguments(serve: Any) -> None:
    serve.add_argument("--upstream", help="the real service to record (with --record DIR)")
    serve.add_argument("--record", metavar="DIR", help="append every exchange to a cassette")
    serve.add_argument(
        "--record-results",
        action="store_true",
        help="also download each result picture once into the cassette (by hash)",
    )
    serve.add_argument(
        "--upstream-timeout",
        type=_positive,
        default=60.0,
        help="seconds one exchange with the upstream may take (60)",
    )
    serve.add_argument("--replay", metavar="DIR", help="answer from a cassette, not an emulator")


def add_conform_arguments(conform: Any) -> None:
    conform.add_argument(
        "--cassette",
        metavar="DIR",
        help="check a recording instead of a live service (offline: nothing is sent)",
    )


def add_commands(sub: Any) -> None:
    calibrate = sub.add_parser(
        "calibrate", help="fit task durations from a cassette into a timing file"
    )
    calibrate.add_argument("cassette", metavar="DIR")
    calibrate.add_argument("-o", "--output", required=True, help="timing file to write")
    calibrate.add_argument(
        "--dist",
        choices=["auto", "fixed", "uniform", "lognormal"],
        default="auto",
        help="distribution to fit (auto: the likeliest)",
    )
    calibrate.add_argument(
        "--min-samples", type=_count, default=5, help="fewest tasks a group needs (5)"
    )
    parity = sub.add_parser("parity", help="send a cassette's requests to a service and diff")
    parity.add_argument("cassette", metavar="DIR")
    parity.add_argument("--against", required=True, help="base URL of the service to compare")
    parity.add_argument("--api-key", help="bearer key for the service (IMAGE_API_KEY)")
    parity.add_argument(
        "--allow-generation",
        action="store_true",
        help="send the submissions to a service that is not on this machine (billable)",
    )
    parity.add_argument("--poll-interval", type=_positive, default=0.5, help="seconds (0.5)")
    parity.add_argument(
        "--deadline", type=_positive, default=120.0, help="seconds a task may take to end (120)"
    )
    parity.add_argument(
        "--request-deadline",
        type=_positive,
        default=30.0,
        help="seconds one exchange may take in all: connect, head and body (30)",
    )
    parity.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="PATH",
        help="also ignore this member everywhere (e.g. data.metadata.task_type); repeatable",
    )
    parity.add_argument("--report", dest="report_dir", help="write parity.txt here")


def wants(args: Any) -> bool:
    """Whether ``args`` ask for a recording command (else the caller runs its own)."""
    if args.command in ("calibrate", "parity"):
        return True
    if args.command == "serve":
        return bool(args.upstream or args.record or args.replay)
    return args.command == "conform" and bool(getattr(args, "cassette", None))


def main(args: Any, environ: dict[str, str], out: Callable[[str], None] = print) -> int:
    if args.command == "serve":
        return _serve(args, environ, out)
    if args.command == "conform":
        return _conform(args, out)
    if args.command == "calibrate":
        from .calibrate import main as calibrate

        return calibrate(Path(args.cassette), Path(args.output), args.dist, args.min_samples, out)
    from .parity import ParityOptions, run_parity

    options = ParityOptions(
        against=args.against,
        api_key=args.api_key or environ.get("IMAGE_API_KEY"),
        allow_generation=args.allow_generation,
        poll_interval=args.poll_interval,
        deadline=args.deadline,
        ignore=tuple(args.ignore),
        request_deadline=args.request_deadline,
    )
    return run_parity(Path(args.cassette), options, out, args.report_dir)


def _serve(args: Any, environ: dict[str, str], out: Callable[[str], None]) -> int:
    from ..config import ConfigError, settings_from_flags

    def refuse(message: str) -> int:
        print(f"image-task-emulator: {message}", file=sys.stderr)
        return EXIT_ERROR

    if args.replay and (args.upstream or args.record):
        return refuse("--replay answers from a cassette: it takes no --upstream or --record")
    if not args.replay and not (args.upstream and args.record):
        return refuse("recording needs both --upstream URL and --record DIR")
    given = [f"--{name.replace('_', '-')}" for name in EMULATOR_ONLY if getattr(args, name, None)]
    if args.workers != 1:
        given.append("--workers")
    if given:
        return refuse(
            f"{', '.join(given)} set(s) the emulator, which does not run with --record or --replay"
        )
    try:
        settings = settings_from_flags(args, environ)
    except (ConfigError, ValueError) as exc:
        return refuse(f"configuration error: {exc}")
    try:
        if args.replay:
            from .replay import create_replay_app

            def warn(warning: str) -> None:
                print(f"image-task-emulator: warning: {warning}", file=sys.stderr)

            app = create_replay_app(args.replay, warn)
            what = f"replaying {args.replay}"
        else:
            from .recorder import RecorderOptions, create_recorder_app
            from .upstream import check_upstream

            options = RecorderOptions(
                upstream=check_upstream(args.upstream),
                directory=Path(args.record),
                record_results=args.record_results,
                timeout=args.upstream_timeout,
            )
            app = create_recorder_app(options)
            what = f"recording {options.upstream} into {args.record}"
    except (OSError, ValueError) as exc:
        return refuse(f"cannot start: {exc}")
    import uvicorn

    from ..http.protocols import protocol

    print(f"image-task-emulator: {what} on http://{settings.host}:{settings.port}", file=sys.stderr)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http=protocol(args.http, settings.max_header_bytes, settings.header_timeout),
    )
    return EXIT_OK


def _conform(args: Any, out: Callable[[str], None]) -> int:
    if getattr(args, "base_url", None):
        out("conform: --cassette checks a recording; it takes no --base-url")
        return EXIT_ERROR
    try:
        import junitparser  # noqa: F401  (the report)
        import schemathesis  # noqa: F401
    except ImportError:
        from ..conformance.cli import INSTALL_HINT

        out(f"conform: {INSTALL_HINT}")
        return EXIT_ERROR
    from .offline import check_cassette

    try:
        run = check_cassette(
            args.cassette,
            contract_file=Path(args.contract) if args.contract else None,
            max_response_time=args.max_response_time,
        )
    except (OSError, ValueError) as exc:
        out(f"conform: could not run: {exc}")
        return EXIT_ERROR
    text = run.text()
    out(text)
    if args.report_dir:
        run.report.write(Path(args.report_dir))
        (Path(args.report_dir) / "summary.txt").write_text(text + "\n", "utf-8")
        out(f"conform: report written to {args.report_dir}/junit.xml and summary.txt")
    return run.report.exit_code


__all__ = ["add_commands", "add_conform_arguments", "add_serve_arguments", "main", "wants"]
