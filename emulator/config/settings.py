"""Settings: one object, built once, from defaults < TOML file < environment < CLI flags.

Every decision of SPEC section 3 that guesses at the real service is a setting here, so a user
can match the real service once a conformance run has shown what it does.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..core.checks import number_problem, shown
from ..core.fault_parsing import FaultError, check_rule_count
from ..core.faults import FaultRule
from ..errors import ConfigError
from .fault_file import parse_faults
from .values import RANGE_NOTES, RANGES, admin_token_problem, base_url_problem, coerce

ClockMode = Literal["real", "manual", "per_poll"]
Envelope = Literal["wrapped", "bare"]
ErrorShape = Literal["object", "string"]

ENV_PREFIX = "EMULATOR_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable about one emulator. Immutable: build a new one to change it."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Seed of every random choice (task ids, schedules, images). None: drawn at start-up.
    seed: int | None = None
    #: Multiplies every task duration; 0 makes tasks finish at their first poll.
    time_scale: float = 1.0
    clock: ClockMode = "real"
    #: per_poll clock: how many polls take a task from queued to its terminal state.
    per_poll_steps: int = 3
    envelope: Envelope = "wrapped"
    #: D-1: empty accepts any non-empty bearer key; otherwise only these keys.
    api_keys: tuple[str, ...] = ()
    #: D-9: None enables the whole catalogue.
    enabled_models: tuple[str, ...] | None = None
    #: D-5: the largest n a NanoBanana-family model accepts.
    nano_max_n: int = 4
    #: D-3: send metadata.result_urls even for a single image.
    always_list_results: bool = False
    #: D-4: "object" sends error as {"code", "message"}; "string" sends the message alone.
    error_shape: ErrorShape = "object"
    #: D-9: 404 task_not_found, or 400 task_not_exist like the relay family.
    unknown_task_status: Literal[404, 400] = 404
    #: D-9: status of an accepted submission.
    submit_status: Literal[200, 202] = 200
    #: Absolute base of result URLs; None uses the address the request came in on.
    public_base_url: str | None = None
    #: Replace the built-in data tables (same format as emulator/data/*.toml).
    catalogue_file: str | None = None
    timing_file: str | None = None
    #: Replace the placeholder price table (same format as emulator/data/prices.toml).
    price_file: str | None = None
    #: Limits (each a clear 4xx).
    max_body_bytes: int = 32 * 1024 * 1024
    max_prompt_chars: int = 32_000
    max_reference_images: int = 16
    max_upload_bytes: int = 20 * 1024 * 1024
    max_reference_pixels: int = 50_000_000
    #: Total size of a request's headers (431 beyond it; the HTTP server also refuses a head
    #: longer than this plus 16 KiB for the request line while it streams in).
    max_header_bytes: int = 64 * 1024
    #: Seconds a client has to send a whole request head (408 and closed beyond it).
    header_timeout: float = 10.0
    #: Multipart text fields and JSON nesting depth accepted in one submission.
    max_form_fields: int = 64
    max_json_depth: int = 32
    #: Values and member names one JSON body may hold (counted before it is parsed).
    max_json_items: int = 10_000
    #: D-11: fetch http(s) reference URLs (off: URLs are kept as text, never fetched).
    fetch_reference_urls: bool = False
    #: Hosts that may be fetched ("cdn.example.com", "*.example.com"); empty: any public host.
    fetch_allow_hosts: tuple[str, ...] = ()
    #: Allow fetching from loopback, private and link-local addresses.
    fetch_allow_private: bool = False
    fetch_timeout: float = 5.0
    fetch_max_bytes: int = 10 * 1024 * 1024
    #: Bytes of rendered images kept in memory.
    render_cache_bytes: int = 256 * 1024 * 1024
    #: Share of tasks (0..1) that fail upstream on their own, drawn from the seed.
    failure_rate: float = 0.0
    #: Seconds added before every answer of submit / poll (a slow network or relay).
    submit_latency: float = 0.0
    poll_latency: float = 0.0
    #: A "hang" fault holds the response at most this long (or until the client gives up).
    hang_max_seconds: float = 300.0
    #: Fault rules, in order ([[faults]] tables in the config file), and a file of more.
    faults: tuple[FaultRule, ...] = ()
    fault_file: str | None = None
    #: Most fault rules installed at once (every request is matched against each).
    max_fault_rules: int = 1000
    #: Most keys with a balance at once (each is a row of every balances listing).
    max_balances: int = 10_000
    #: Requests kept in the journal (oldest dropped first).
    journal_limit: int = 1000
    #: Where state lives: "memory", "sqlite:///path/to/file.db", "redis://host:port/db";
    #: "sqlite" alone is a file in ``state_dir``.
    store: str = "memory"
    #: Shorthand for store = "sqlite:///<state_dir>/emulator.db" (state kept across restarts).
    state_dir: str | None = None
    #: Namespace of this emulator's keys in a store shared with other emulators (Redis).
    store_prefix: str = "emulator"
    #: Seconds one call to a Redis store may take, sending and answering (a 503 beyond it; a
    #: write is never retried): raise it for a distant or loaded Redis.
    redis_timeout: float = 1.0
    #: Finished tasks are forgotten this many clock seconds after they end (0: kept forever).
    task_ttl_seconds: float = 86_400.0
    #: Most tasks kept; when full, the oldest finished go first (0: no limit).
    max_tasks: int = 100_000
    #: Finished charges listed in the usage log (oldest settled dropped first; the totals keep
    #: counting them; held charges are always listed).
    usage_log_limit: int = 10_000
    #: When set, the control plane (but not result images) needs ``X-Emulator-Token``.
    admin_token: str | None = None
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    #: "json": one JSON line per request (keys and result tokens masked) instead of uvicorn's.
    log_format: Literal["text", "json"] = "text"
    #: Origins a browser front-end may call from (CORS); empty: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated."""
        return build_settings(overrides=changes, base=self)

    @property
    def store_url(self) -> str:
        """The store to open: ``state_dir`` stands for a SQLite file in that folder."""
        if self.state_dir is not None or self.store == "sqlite":
            folder = Path(self.state_dir or DEFAULT_STATE_DIR).absolute()
            return f"sqlite://{folder / 'emulator.db'}"
        return self.store


SETTING_NAMES: frozenset[str] = frozenset(f.name for f in fields(Settings))
#: Settings that cannot change while serving (they shape the process or the state).
FIXED_SETTINGS = frozenset(
    {"host", "port", "seed", "clock", "faults", "fault_file", "render_cache_bytes", "price_file"}
    # Whoever can reach the control plane must not be able to open the network fences.
    | {"admin_token", "fetch_reference_urls", "fetch_allow_hosts", "fetch_allow_private"}
    # The store is opened once, at start-up.
    | {"store", "state_dir", "store_prefix", "redis_timeout"}
    # The HTTP server enforces these from start-up, before a request reaches the app.
    | {"max_header_bytes", "header_timeout"}
    # The app's middleware and the server's logging are built once, at start-up. The log
    # level is uvicorn's loggers' (and the JSON access log's): they belong to the process,
    # which may serve other emulators (the pytest plugin) or be one worker of several.
    | {"log_format", "cors_origins", "log_level"}
)


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings)  # once: it costs more than the rest of replace()


#: Where ``store = "sqlite"`` keeps its file when ``state_dir`` is not set.
DEFAULT_STATE_DIR = "emulator-state"


def _apply(values: dict[str, Any], data: Mapping[str, Any], source: str, from_text: bool) -> None:
    hints = _hints()
    for key, value in data.items():
        if key not in SETTING_NAMES:
            raise ConfigError(
                f"unknown setting {shown(key)} (from {source}){_closest(key)}", field=str(key)
            )
        try:
            if key == "faults":
                values[key] = parse_faults(value, source)
            else:
                values[key] = coerce(key, value, hints[key], source, from_text)
        except ConfigError as exc:
            # Every refusal of a value names its key (``EmulatorError.field``), here in one place.
            exc.field = exc.field or key
            raise


def _closest(key: object) -> str:
    """What a refusal of a misspelt setting name adds: ``; did you mean 'x'?`` (nothing when
    no name is close)."""
    close = difflib.get_close_matches(key, SETTING_NAMES, n=1) if isinstance(key, str) else []
    return f"; did you mean {close[0]!r}?" if close else ""


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a settings file; a missing file or bad TOML is a ConfigError naming the file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    # An [emulator] table is allowed so the file can hold other tools' tables too.
    return dict(data.get("emulator", data))


def build_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: Settings | None = None,
    overrides_are_text: bool = False,
    overrides_source: str = "arguments",
) -> Settings:
    """Build Settings from defaults < ``config_file`` < ``environ`` (EMULATOR_*) < ``overrides``.

    ``environ`` defaults to nothing (not os.environ) so library use is hermetic; the CLI passes
    ``os.environ``. ``overrides`` are already typed values (e.g. from the pytest marker) unless
    ``overrides_are_text``; ``overrides_source`` is what a refusal says they came from.

    Text (the environment, flags) is the value it spells: an empty text is the empty value,
    refused or taken as the file's ``x = ""`` would be, never "unset" (`values.coerce`).
    """
    # Not dataclasses.asdict: it would turn nested rules into dicts.
    values: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(base)} if base else {}
    layers: list[tuple[Mapping[str, Any], str, bool]] = []  # (values, source, from text)
    if config_file is not None:
        layers.append((load_toml(config_file), f"config file {str(config_file)!r}", False))
    for variable, text in (environ or {}).items():
        if variable.startswith(ENV_PREFIX) and variable != f"{ENV_PREFIX}CONFIG":
            name = variable[len(ENV_PREFIX) :].lower()
            layers.append(({name: text}, f"environment variable {variable}", True))
    if overrides:
        layers.append((overrides, overrides_source, overrides_are_text))
    # Where each value came from, for check_ranges' refusals (one of ``base``: "Settings").
    sources: dict[str, str] = {}
    for data, source, from_text in layers:
        _apply(values, data, source, from_text)
        sources.update(dict.fromkeys(data, source))
    settings = Settings(**values)
    check_ranges(settings, sources)
    return settings


_STORE_FORMS = "'memory', 'sqlite' (in state_dir), 'sqlite:///path/to/file.db' or 'redis://…'"


def _store_url_ok(url: str) -> bool:
    """The forms ``store.open_store`` knows (whether it can open them is checked at start)."""
    if url in ("memory", "memory://", "sqlite"):
        return True
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        return path != "" and not path.endswith("/")
    return url.startswith(("redis://", "rediss://", "unix://"))


#: A CORS origin as browsers send it: scheme, host and an optional port; or "*" for any.
_ORIGIN = re.compile(r"\*|https?://[^/\s?#@]+")

#: Settings naming a file, and what leaving one unset means: an empty name is refused.
_FILE_SETTINGS = {
    "catalogue_file": "the built-in table",
    "timing_file": "the built-in table",
    "price_file": "the built-in table",
    "fault_file": "no fault file",
}


def check_ranges(s: Settings, sources: Mapping[str, str] | None = None) -> None:
    """ConfigError unless every number of ``s`` is in its range, the admin token has its form
    and the settings agree. A refusal of the token names its source (``sources``; by default
    the ``Settings`` field), so that an empty ``--admin-token "$TOKEN"`` points at the flag."""
    if s.admin_token is not None:
        problem = admin_token_problem(s.admin_token)
        if problem is not None:
            source = (sources or {}).get("admin_token", "Settings")
            raise ConfigError(
                f"setting 'admin_token' (from {source}) {problem}", field="admin_token"
            )
    for name, (low, high) in RANGES.items():
        value = getattr(s, name)
        problem = None if value is None else number_problem(value, low, high)
        if problem is not None:
            raise ConfigError(f"{name} {problem}{RANGE_NOTES.get(name, '')}", field=name)
    rules: list[tuple[bool, str]] = [
        (_store_url_ok(s.store), f"setting 'store' must be {_STORE_FORMS}, got {shown(s.store)}"),
        (s.state_dir is None or s.state_dir.strip() != "", "state_dir must name a folder"),
        (
            # memory, the default, only when it was given (it ran on SQLite, said memory)
            s.state_dir is None
            or s.store == "sqlite"
            or (s.store in ("memory", "memory://") and "store" not in (sources or {})),
            "set either 'store' or 'state_dir' (a SQLite file in that folder), not both",
        ),
        (s.store_prefix.strip() != "", "store_prefix must not be empty"),
        (
            s.host.strip() != "",
            "host must name an address to bind (127.0.0.1 by default; 0.0.0.0 for every "
            "interface), not be empty",
        ),
    ]
    for name, unset in _FILE_SETTINGS.items():
        rules.append(
            (getattr(s, name) != "", f"{name} must name a file, not be empty (unset: {unset})")
        )
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)
    problem = None if s.public_base_url is None else base_url_problem(s.public_base_url)
    if problem is not None:
        raise ConfigError(f"public_base_url {problem}", field="public_base_url")
    for i, origin in enumerate(s.cors_origins):
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"cors_origins[{i}] must be an origin like 'http://localhost:5173' (scheme, "
                f"host, optional port; no path) or '*', got {shown(origin)}",
                field="cors_origins",
            )
    try:
        check_rule_count(0, len(s.faults), s.max_fault_rules, "setting 'faults'")
    except FaultError as exc:
        raise ConfigError(exc.message, field="max_fault_rules") from None


def checked(settings: Settings) -> Settings:
    """``settings`` if every value has its field's type and range, else ConfigError.

    ``build_settings`` checks what it builds; this catches a ``Settings(...)`` built directly
    (``Settings(clock="manul")`` would otherwise quietly run the real clock).
    """
    hints = _hints()
    for f in fields(settings):
        if f.name != "faults":
            coerce(f.name, getattr(settings, f.name), hints[f.name], "Settings", False)
    check_ranges(settings)
    return settings


#: ``serve``'s flags that each set the setting of the same name.
SERVE_FLAGS = (
    "host",
    "port",
    "seed",
    "time_scale",
    "clock",
    "envelope",
    "public_base_url",
    "log_level",
    "failure_rate",
    "fault_file",
    "admin_token",
    "store",
    "state_dir",
    "store_prefix",
    "redis_timeout",
    "log_format",
)


def settings_from_flags(args: Any, environ: Mapping[str, str]) -> Settings:
    """``serve``'s settings: defaults < config file (``args.config``, else ``EMULATOR_CONFIG``)
    < environment < flags (``args``: parsed flags, as text)."""
    flags = {
        name: getattr(args, name) for name in SERVE_FLAGS if getattr(args, name, None) is not None
    }
    config = args.config or environ.get("EMULATOR_CONFIG")
    return build_settings(
        config_file=config,
        environ=environ,
        overrides=flags,
        overrides_are_text=True,
        overrides_source="the command line",
    )


def settings_from_environment(config_file: str | None = None) -> Settings:
    """What ``serve`` uses: the file named by ``--config`` or ``EMULATOR_CONFIG``, then env."""
    path = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG")
    return build_settings(config_file=path, environ=os.environ)


__all__ = [
    "FIXED_SETTINGS",
    "ConfigError",
    "Settings",
    "build_settings",
    "checked",
    "load_toml",
    "settings_from_environment",
    "settings_from_flags",
]
