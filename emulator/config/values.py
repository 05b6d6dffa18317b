"""What a setting's value may be: its type (from ``Settings``' hints), its documented range,
its length, the admin token's form (``settings.check_ranges`` checks the ranges and the
token); ``ConfigError`` naming the key otherwise.

Settings are shown again (``GET /_emulator/config``), written into answers (``public_base_url``
in result URLs) and multiply durations (``time_scale``): a NaN, an infinity, a 1e308 or a lone
surrogate kept in one would fail answers later, so each is refused when the setting is built.
"""

from __future__ import annotations

import math
import re
import types
import typing
from typing import Any, Literal
from urllib.parse import urlsplit

from ..core.checks import MAX_NAME_CHARS, MAX_TEXT_CHARS, shown, text_problem
from ..errors import ConfigError


def coerce(key: str, value: Any, hint: Any, source: str, from_text: bool) -> Any:
    """Check ``value`` against the field's type hint; text from env/CLI is parsed first."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    where = f"setting {key!r} (from {source})"
    if isinstance(value, str):
        # Before anything echoes it: a lone surrogate kept in a setting fails every answer
        # that shows it (GET /_emulator/config, result URLs...).
        problem = text_problem(value, TEXT_LIMITS.get(key, MAX_TEXT_CHARS))
        if problem is not None:
            raise ConfigError(f"{where} {problem}")
    if origin in (typing.Union, types.UnionType):
        # From text, ``none`` / ``null`` set an optional setting to none; an empty text is the
        # empty value, checked as the file's ``x = ""`` is: never "unset" (an unset variable
        # in ``--admin-token "$TOKEN"`` must not open the control plane). The admin token is
        # turned off only by leaving it out: no word written anywhere does it.
        is_none = value is None or (from_text and value in NONE_WORDS)
        if is_none and key == "admin_token" and value is not None:
            raise ConfigError(f"{where} is {shown(value)}; {ADMIN_TOKEN_UNSET}")
        if is_none and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(key, value, inner[0], source, from_text)
    if origin is Literal:
        for choice in args:
            if value == choice or (from_text and str(choice) == str(value)):
                return choice
        allowed = ", ".join(repr(c) for c in args)
        raise ConfigError(f"{where} must be one of {allowed}, got {shown(value)}")
    if origin is tuple:
        if from_text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {shown(value)}")
        if len(value) > MAX_LIST_ITEMS:
            raise ConfigError(f"{where} may hold at most {MAX_LIST_ITEMS} entries")
        for i, item in enumerate(value):
            problem = text_problem(item, TEXT_LIMITS.get(key, MAX_TEXT_CHARS))
            if problem is not None:
                raise ConfigError(f"{where}[{i}] {problem}")
        return tuple(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return str(value).lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where} must be true or false, got {shown(value)}")
    if hint is int:
        if from_text and isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{where} must be an integer, got {shown(value)}") from None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {shown(value)}")
        return value
    if hint is float:
        if from_text and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {shown(value)}") from None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {shown(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {shown(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {shown(value)}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint!r}")  # pragma: no cover


#: What sets an optional setting to none from the environment or a flag (not the admin token).
NONE_WORDS = ("none", "null")
#: An admin token is sent in a header: visible ASCII only, so every client sends the same bytes.
_ADMIN_TOKEN = re.compile(r"[!-~]{1,256}")
ADMIN_TOKEN_RULE = (
    "must be 1 to 256 visible ASCII characters (no spaces): it travels in the X-Emulator-Token "
    "header, which clients encode differently beyond ASCII"
)
ADMIN_TOKEN_UNSET = "to serve the control plane without a token, leave admin_token unset"


def admin_token_problem(token: str) -> str | None:
    """What is wrong with ``token`` as an admin token (never showing it), or None."""
    if token == "":
        return f"is empty; it {ADMIN_TOKEN_RULE} ({ADMIN_TOKEN_UNSET})"
    if _ADMIN_TOKEN.fullmatch(token) is None:
        return ADMIN_TOKEN_RULE
    return None


#: What result URLs can be built on: scheme, a host (and port), maybe a path; nothing that
#: would end the URL's path (``?``, ``#``) or break it (spaces, controls, backslashes).
_BASE_URL = re.compile(r"https?://[^/\s?#@\\\x00-\x1f\x7f]+(/[^\s?#\\\x00-\x1f\x7f]*)?")


def base_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as ``public_base_url`` (a user@ part is not shown), or None."""
    if _BASE_URL.fullmatch(url) and _host_and_port(url):
        return None
    got = "a URL with user@ (not shown)" if "@" in url.partition("//")[2].split("/")[0] else None
    got = got or shown(url)
    return (
        "must be an http:// or https:// URL with a host and at most a path (no spaces, user@, "
        f"query or fragment: result URLs are built by appending to it), got {got}"
    )


def _host_and_port(url: str) -> bool:
    """Whether ``url`` names a host, and a port (if any) that is a number of 1-65535: the
    pattern alone let ``http://:8000``, ``http://host:abc`` and ``http://[::1`` through."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return bool(parts.hostname) and (port is None or port > 0)


#: The documented range of every numeric setting (README's settings table; the contract).
RANGES: dict[str, tuple[float, float]] = {
    "port": (1, 65535),
    "seed": (-(2**63), 2**63 - 1),
    "time_scale": (0, 1000),
    "per_poll_steps": (1, 1000),
    "nano_max_n": (1, 100),
    "max_body_bytes": (1024, 2**30),
    "max_prompt_chars": (1, 1_000_000),
    "max_reference_images": (1, 256),
    "max_upload_bytes": (1, 2**30),
    "max_reference_pixels": (1, 10**9),
    "max_header_bytes": (1024, 2**20),
    "header_timeout": (0.1, 3600),
    "max_form_fields": (8, 10_000),
    "max_json_depth": (2, 1000),
    "max_json_items": (16, 10_000_000),
    "fetch_timeout": (0.001, 600),
    "redis_timeout": (0.05, 600),
    "fetch_max_bytes": (1, 2**30),
    "render_cache_bytes": (0, 2**36),
    "failure_rate": (0, 1),
    "submit_latency": (0, 600),
    "poll_latency": (0, 600),
    "hang_max_seconds": (0, 3600),
    "journal_limit": (0, 1_000_000),
    "max_fault_rules": (1, 100_000),
    "max_balances": (1, 100_000),
    "task_ttl_seconds": (0, 10**9),
    "max_tasks": (0, 10**8),
    "usage_log_limit": (0, 10**8),
}
#: What a range means where it is not obvious.
RANGE_NOTES = {
    "time_scale": " (0: tasks finish at their first poll)",
    "task_ttl_seconds": " (seconds; 0: finished tasks are kept)",
    "max_tasks": " (0: no limit)",
    "usage_log_limit": " (finished charges listed; totals keep every charge)",
    "submit_latency": " (seconds)",
    "poll_latency": " (seconds)",
    "hang_max_seconds": " (seconds)",
    "fetch_timeout": " (seconds)",
    "redis_timeout": " (seconds)",
    "header_timeout": " (seconds)",
}
#: Longest text of a text setting (or of each entry of a list setting); others MAX_TEXT_CHARS.
TEXT_LIMITS: dict[str, int] = {
    "host": 255,
    "store_prefix": MAX_NAME_CHARS,
    "admin_token": MAX_NAME_CHARS,
    "enabled_models": MAX_NAME_CHARS,
    "fetch_allow_hosts": 255,
    "cors_origins": 255,
}
#: Most entries of a list setting (api_keys, enabled_models, fetch_allow_hosts, cors_origins).
MAX_LIST_ITEMS = 10_000
__all__ = [
    "MAX_LIST_ITEMS",
    "NONE_WORDS",
    "RANGES",
    "RANGE_NOTES",
    "TEXT_LIMITS",
    "admin_token_problem",
    "base_url_problem",
    "coerce",
]
