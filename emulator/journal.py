"""The request journal: what clients sent and what they got, with secrets masked."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from .errors import StoreUnavailable

if TYPE_CHECKING:
    from .app import Emulator

#: Header values never journaled in full.
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-emulator-token", "proxy-authorization"})
_MAX_TEXT = 200


def mask_key(key: str) -> str:
    """Enough of a key to tell keys apart, never enough to use it: ``sk-t…key``."""
    if len(key) <= 8:
        return "…" if len(key) <= 2 else key[:1] + "…" + key[-1:]
    return f"{key[:4]}…{key[-3:]}"


def mask_header(name: str, value: str) -> str:
    if name not in SECRET_HEADERS:
        return value
    scheme, sep, rest = value.partition(" ")
    if sep and scheme.lower() in ("bearer", "basic", "token"):
        return f"{scheme} {mask_key(rest.strip())}"
    return mask_key(value)


def _plain(value: Any) -> bool:
    """True when ``_short`` would give ``value`` back unchanged (and it is not a container)."""
    if isinstance(value, str):
        return len(value) <= _MAX_TEXT and not value.startswith("data:")
    return not isinstance(value, list | dict)


def _flat(fields: dict[Any, Any]) -> bool:
    for key, value in fields.items():
        if not (isinstance(key, str) and len(key) <= _MAX_TEXT and _plain(value)):
            return False
    return True


def _short(value: Any) -> Any:
    if isinstance(value, dict) and len(value) <= 40 and _flat(value):
        return dict(value)  # every ordinary submission: nothing to cut (a fast path)
    if isinstance(value, str):
        if value.startswith("data:"):
            return value[: value.find(",") + 1] + "…" if "," in value else "data:…"
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"
    if isinstance(value, list):
        return [_short(v) for v in value[:20]]
    if isinstance(value, dict):
        return {str(k)[:_MAX_TEXT]: _short(v) for k, v in list(value.items())[:40]}
    return value


def _state(request: Request) -> dict[str, Any]:
    """The values behind ``request.state``, read without an AttributeError per absent one
    (``request.state`` wraps ``scope["state"]``; exceptions cost more than the request)."""
    state: dict[str, Any] = request.scope.get("state") or {}
    return state


def summarise_body(request: Request) -> dict[str, Any] | None:
    """The parsed fields the validator saw (long strings cut), and uploaded files' sizes."""
    state = _state(request)
    fields = state.get("fields")
    files = state.get("files")
    if fields is None and not files:
        return None
    summary: dict[str, Any] = {"fields": _short(fields or {})}
    if files:
        summary["files"] = [{"name": name, "bytes": size} for name, size in files]
    return summary


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """``request.headers.items()`` as a dict, secrets masked (read from the scope directly).

    Decoded in one comprehension, then the few secret ones masked: the same dict (a repeated
    header keeps its first place and its last value, masked) for less work per request.
    """
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}
    for name in SECRET_HEADERS.intersection(headers):
        headers[name] = mask_header(name, headers[name])
    return headers


async def record(
    emulator: Emulator, request: Request, endpoint: str, status: int, started: float
) -> None:
    """Append one journal entry for ``request``."""
    limit = emulator.settings.journal_limit
    if limit <= 0:
        return
    state = _state(request)
    key = state.get("api_key")
    scope = request.scope
    try:
        clock = await emulator.clock.now()
    except StoreUnavailable:
        return  # the journal is diagnostics: a store outage must not turn an answer into a 503
    entry = {
        "time": time.time(),
        "clock": clock,
        "endpoint": endpoint,
        "method": scope["method"],
        # request.url.path and .query, without building a URL per request
        "path": scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C"),
        "query": scope.get("query_string", b"").decode("latin-1"),  # raw bytes: may be any
        "headers": _headers(scope["headers"]),
        "api_key": mask_key(key) if key else None,
        "body": summarise_body(request),
        "status": status,
        "task_id": state.get("task_id"),
        "fault": state.get("fault"),
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    with contextlib.suppress(StoreUnavailable):  # as above: the answer stands
        await emulator.store.log_request(entry, limit)
