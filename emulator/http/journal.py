"""One journal entry per request to the task routes: what the client sent (secrets masked,
long values cut) and what it got."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from starlette.requests import Request

from ..core.clock import Clock
from ..core.journal import MAX_BODY_FIELDS, SECRET_HEADERS, listed, mask_header, short
from ..core.keys import mask_key
from ..errors import StoreUnavailable
from ..stores import Store
from ..usecases.configuration import Configuration
from ..usecases.submission import FIELDS


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
    fields = fields or {}
    if len(fields) > MAX_BODY_FIELDS:
        # The journal keeps MAX_BODY_FIELDS of them: the request fields first, whatever the
        # order they came in, so that a flood of unknown ones cannot hide the model.
        known = {k: v for k, v in fields.items() if k in FIELDS}
        fields = known | {k: v for k, v in fields.items() if k not in known}
    summary: dict[str, Any] = {"fields": short(fields)}
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


def _path(path: str) -> str:
    """``request.url.path`` without building a URL: the three characters it escapes are rare,
    so looked for before any copy is made."""
    if "?" in path or "#" in path or "\\" in path:
        return path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return path


async def record(
    store: Store,
    clock: Clock,
    config: Configuration,
    request: Request,
    endpoint: str,
    status: int,
    started: float,
) -> None:
    """Append one journal entry for ``request`` (at most ``journal_limit`` are kept)."""
    limit = config.settings.journal_limit
    if limit <= 0:
        return
    state = _state(request)
    key = state.get("api_key")
    scope = request.scope
    try:
        now = await clock.now()
    except StoreUnavailable:
        return  # the journal is diagnostics: a store outage must not turn an answer into a 503
    entry = {
        "time": time.time(),
        "clock": now,
        "endpoint": endpoint,
        "method": scope["method"],
        # request.url.path and .query, without building a URL per request
        "path": _path(scope["path"]),
        "query": scope.get("query_string", b"").decode("latin-1"),  # raw bytes: may be any
        "headers": _headers(scope["headers"]),
        "api_key": mask_key(key) if key else None,
        "body": summarise_body(request),
        "status": status,
        "task_id": state.get("task_id"),
        "fault": state.get("fault"),
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    unknown = state.get("unknown_fields")
    if unknown is not None:  # a submission whose body could be read (D-13)
        entry["unknown_fields"], entry["unknown_fields_more"] = listed(unknown)
    with contextlib.suppress(StoreUnavailable):  # as above: the answer stands
        await store.append_journal(entry, limit)
