"""Command line: ``python -m emulator serve ...`` (also the ``image-task-emulator`` script)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

from .config import ConfigError, Settings, build_settings

#: CLI flag -> setting name, for flags that map one-to-one onto settings.
_SERVE_FLAGS = {
    "host": "host",
    "port": "port",
    "seed": "seed",
    "time_scale": "time_scale",
    "clock": "clock",
    "envelope": "envelope",
    "public_base_url": "public_base_url",
    "log_level": "log_level",
    "failure_rate": "failure_rate",
    "fault_file": "fault_file",
    "admin_token": "admin_token",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-task-emulator", description="Emulator of the image task API."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the emulator over HTTP")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", help="port to bind (default 8000)")
    serve.add_argument("--config", help="TOML settings file (also EMULATOR_CONFIG)")
    serve.add_argument("--seed", help="seed of every random choice (default: random)")
    serve.add_argument("--time-scale", dest="time_scale", help="multiplies task durations")
    serve.add_argument("--clock", choices=["real", "manual", "per_poll"])
    serve.add_argument("--envelope", choices=["wrapped", "bare"])
    serve.add_argument("--public-base-url", dest="public_base_url")
    serve.add_argument("--failure-rate", dest="failure_rate", help="share of tasks that fail")
    serve.add_argument("--fault-file", dest="fault_file", help="TOML/JSON file of fault rules")
    serve.add_argument("--admin-token", dest="admin_token", help="token for /_emulator routes")
    serve.add_argument(
        "--log-level", dest="log_level", choices=["critical", "error", "warning", "info", "debug"]
    )
    return parser


def settings_from_args(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """defaults < config file < environment < flags."""
    flags: dict[str, Any] = {
        name: getattr(args, flag)
        for flag, name in _SERVE_FLAGS.items()
        if getattr(args, flag, None) is not None
    }
    config = args.config or environ.get("EMULATOR_CONFIG")
    return build_settings(
        config_file=config, environ=environ, overrides=flags, overrides_are_text=True
    )


def serve(settings: Settings) -> int:
    import uvicorn

    from .app import create_app

    try:
        app = create_app(settings)
    except (OSError, ValueError, KeyError) as exc:
        print(f"image-task-emulator: cannot start: {exc}", file=sys.stderr)
        return 2
    fast = importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if fast else "h11",
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from_args(args, dict(os.environ))
    except (ConfigError, ValueError) as exc:
        print(f"image-task-emulator: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings)
    return 0  # pragma: no cover - argparse requires a command
