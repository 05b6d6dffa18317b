"""Command line: ``python -m emulator serve ...`` (also the ``image-task-emulator`` script)."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib.metadata
import importlib.util
import json
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .config import ConfigError, Settings, build_settings
from .config import settings_from_flags as settings_from_args

if TYPE_CHECKING:
    from starlette.applications import Starlette

#: How ``serve --workers N`` hands its settings to each worker process (outside the EMULATOR_
#: namespace on purpose: it is not a setting, and settings from the environment reject it).
WORKER_SETTINGS_ENV = "IMAGE_TASK_EMULATOR_WORKER_SETTINGS"
#: And how many workers there are: each says so where it answers for itself alone
#: (``PATCH /_emulator/config`` changes the answering worker's settings only).
WORKER_COUNT_ENV = "IMAGE_TASK_EMULATOR_WORKERS"
_SHARED_STORES = ("redis://", "rediss://", "unix://")


def _version() -> str:
    """The installed distribution's version (what pip and the wheel say)."""
    try:
        return importlib.metadata.version("image-task-emulator")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree never installed
        from . import __version__

        return f"{__version__} (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-task-emulator", description="Emulator of the image task API."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
        "--store", help="where state lives: memory (default), sqlite:///path/file.db, redis://…"
    )
    serve.add_argument(
        "--state-dir", dest="state_dir", help="keep state across restarts in DIR/emulator.db"
    )
    serve.add_argument("--store-prefix", dest="store_prefix", help="key namespace in Redis")
    serve.add_argument(
        "--redis-timeout", dest="redis_timeout", help="seconds one call to Redis may take (1)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (more than 1 needs a shared store: --store redis://host:port/db)",
    )
    serve.add_argument(
        "--log-level", dest="log_level", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--log-format", dest="log_format", choices=["text", "json"], help="access log lines"
    )
    serve.add_argument(
        "--http",
        choices=["auto", "h11", "httptools"],
        default="auto",
        help="HTTP parser (auto: httptools when installed, else h11)",
    )
    from . import conformance, recording

    conform = sub.add_parser("conform", help="check a live service against the OpenAPI contract")
    conformance.add_arguments(conform)
    # Recording: serve --upstream/--record/--replay, conform --cassette, calibrate, parity.
    recording.add_serve_arguments(serve)
    recording.add_conform_arguments(conform)
    recording.add_commands(sub)
    return parser


def _settings_for_workers(settings: Settings) -> str:
    """``settings`` as JSON that ``build_settings(overrides=...)`` turns back into them."""
    data: dict[str, Any] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "faults":
            value = [rule.to_dict() for rule in value]
        elif isinstance(value, tuple):
            value = list(value)
        data[f.name] = value
    return json.dumps(data)


def worker_app() -> Starlette:
    """The app of one worker process of ``serve --workers N`` (uvicorn calls this factory in
    each worker; the parent put its settings in the environment)."""
    from .http import access_log
    from .http.app import create_app

    settings = build_settings(overrides=json.loads(os.environ[WORKER_SETTINGS_ENV]))
    if settings.log_format == "json":
        access_log.configure(settings.log_level)
    app = create_app(settings)
    app.state.workers = int(os.environ.get(WORKER_COUNT_ENV, "1"))
    return app


def _store_problem(settings: Settings, workers: int) -> str | None:
    """Why the configured store cannot serve, or None (a shared store is probed once here)."""
    url = settings.store_url
    if not url.startswith(_SHARED_STORES):
        if workers > 1:
            kind = "the SQLite store" if url.startswith("sqlite") else "the in-memory store"
            return (
                f"--workers {workers} needs a store that every worker process shares, and "
                f"{kind} belongs to one process: a task submitted to one worker would be "
                "unknown to the others. Use --store redis://host:port/db (see docs/scaling.md)"
            )
        return None
    from .errors import StoreUnavailable
    from .stores.factory import open_store
    from .usecases.startup import start_problem

    async def probe() -> None:
        store = open_store(url, prefix=settings.store_prefix, timeout=settings.redis_timeout)
        try:
            await store.ping()
        finally:
            await store.close()

    try:
        asyncio.run(probe())
    except StoreUnavailable as exc:
        return start_problem(exc, url)
    return None


def _clock_problem(settings: Settings) -> str | None:
    """Why the configured store refuses this ``clock`` (it was kept with another), or None.
    Asked here, before the server listens, on a store opened for the question (the app's own
    belongs to the server's loop); the app claims the same mode again when it starts."""
    url = settings.store_url
    if url in ("memory", "memory://"):
        return None  # never kept: nothing to ask
    from .errors import StoreUnavailable
    from .stores.factory import open_store
    from .usecases.startup import claim_clock, start_problem, store_named

    async def probe() -> None:
        store = open_store(url, prefix=settings.store_prefix, timeout=settings.redis_timeout)
        try:
            await claim_clock(store, settings.clock, store_named(url, settings.store_prefix))
        finally:
            await store.close()

    try:
        asyncio.run(probe())
    except (ConfigError, StoreUnavailable) as exc:
        return start_problem(exc, url)
    return None


def _tune_malloc(arenas: int = 2, mmap_threshold: int = 1024 * 1024) -> None:
    """Make glibc give picture buffers back to the system.

    Freed picture buffers stay in per-thread malloc arenas: a soak run saw RSS grow ~100 MiB
    that way with the default (8 arenas per core), ~30 MiB with 2. And glibc raises its mmap
    threshold after the first large free, so later 16 MiB blocks (Pillow allocates pictures in
    those) come from the heap and stay there when freed: eight decoded 49-megapixel references
    left RSS 1.3 GiB higher. A fixed threshold of 1 MiB maps every large block on its own and
    unmaps it when freed. Workers read the environment variables.
    """
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(mmap_threshold))
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, int(os.environ["MALLOC_ARENA_MAX"]))  # -8: M_ARENA_MAX
        libc.mallopt(-3, int(os.environ["MALLOC_MMAP_THRESHOLD_"]))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError, ValueError):
        pass  # not glibc: nothing to tune


def serve(settings: Settings, workers: int = 1, http: str = "auto") -> int:
    import uvicorn

    from .http.app import create_app
    from .http.protocols import head_limit, protocol

    _tune_malloc()

    if workers < 1:
        print("image-task-emulator: configuration error: --workers must be >= 1", file=sys.stderr)
        return 2
    if workers > 1 and settings.seed is None:
        # Every worker must draw from one seed (ids, schedules, fault decisions).
        settings = settings.replace(seed=secrets.randbits(63))
    try:
        problem = _store_problem(settings, workers)
        # Built here even for workers (which build their own): bad settings fail once, here.
        app = None if problem else create_app(settings)
        problem = problem or _clock_problem(settings)
    except (OSError, ValueError, KeyError) as exc:
        problem = str(exc)
    if problem or app is None:
        print(f"image-task-emulator: cannot start: {problem}", file=sys.stderr)
        return 2
    try:
        # Guarded protocols: heads are bounded in size and time before the app sees them.
        http_protocol = protocol(http, settings.max_header_bytes, settings.header_timeout)
    except ValueError as exc:
        print(f"image-task-emulator: cannot start: {exc}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": http_protocol,
        # h11's own bound on a head it buffers (a backstop to the guard's count).
        "h11_max_incomplete_event_size": head_limit(settings.max_header_bytes),
    }
    if settings.log_format == "json":
        from .http import access_log

        options["access_log"] = False  # the app writes its own lines, secrets masked
        access_log.configure(settings.log_level)
    if workers == 1:
        uvicorn.run(app, **options)
    else:
        os.environ[WORKER_SETTINGS_ENV] = _settings_for_workers(settings)
        os.environ[WORKER_COUNT_ENV] = str(workers)
        uvicorn.run("emulator.cli:worker_app", factory=True, workers=workers, **options)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from . import recording

    if recording.wants(args):
        return recording.main(args, dict(os.environ))
    if args.command == "conform":
        from . import conformance

        return conformance.main(args, dict(os.environ))
    try:
        settings = settings_from_args(args, dict(os.environ))
    except (ConfigError, ValueError) as exc:
        print(f"image-task-emulator: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings, args.workers, args.http)
    return 0  # pragma: no cover - argparse requires a command
