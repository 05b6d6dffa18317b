"""One journal entry per request to the task routes: what the client sent (secrets masked,
long values cut) and what it got."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from ..core.clock import Clock
from ..core.journal import MAX_BODY_FIELDS, SECRET_HEADERS, listed, mask_header, short
from ..core.keys import mask_key
from ..errors import StoreUnavailable
from ..usecases.journal import JournalKeeper
from ..usecases.submission import FIELDS


def _body_fields(state: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Any]]:
    """The parsed fields the validator saw, as the journal keeps them (long strings cut, a
    bounded copy: never the request's own dict), and uploaded files' (name, size) pairs."""
    fields = state.get("fields")
    files: list[Any] = state.get("files") or []
    if fields is None and not files:
        return None, files
    fields = fields or {}
    if len(fields) > MAX_BODY_FIELDS:
        # The journal keeps MAX_BODY_FIELDS of them: the request fields first, whatever the
        # order they came in, so that a flood of unknown ones cannot hide the model.
        known = {k: v for k, v in fields.items() if k in FIELDS}
        fields = known | {k: v for k, v in fields.items() if k not in known}
    return short(fields), files


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
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


class _Pending(tuple[Any, ...]):
    """One request's journal entry as raw pieces, built only when the journal is read (the
    memory store; a serialising store builds it at once). Each piece is immutable (text,
    numbers, tuples) or a copy made here that nothing else holds, and none is bigger than what
    the entry keeps of it: the body's fields are cut when the request is recorded. A tuple:
    made in one step, with no ``__init__`` to run per request."""

    __slots__ = ()

    def build(self) -> dict[str, Any]:
        (at, clock, endpoint, method, path, query, headers, key, fields, files, status,
         task_id, fault, duration, unknown) = self  # fmt: skip
        body: dict[str, Any] | None = None
        if fields is not None:
            body = {"fields": dict(fields)}
            if files:
                body["files"] = [{"name": name, "bytes": size} for name, size in files]
        entry = {
            "time": at,
            "clock": clock,
            "endpoint": endpoint,
            "method": method,
            # request.url.path and .query, without building a URL per request
            "path": _path(path),
            "query": query.decode("latin-1"),  # raw bytes: may be any
            "headers": _headers(headers),
            "api_key": mask_key(key) if key else None,
            "body": body,
            "status": status,
            "task_id": task_id,
            "fault": fault,
            "duration_ms": round(duration * 1000, 3),
        }
        if unknown is not None:
            entry["unknown_fields"] = list(unknown[0])
            entry["unknown_fields_more"] = unknown[1]
        return entry


async def record(
    journal: JournalKeeper,
    clock: Clock,
    request: Request,
    endpoint: str,
    status: int,
    started: float,
    store_down: bool = False,
) -> None:
    """Append one journal entry for ``request`` (at most ``journal_limit`` are kept). With
    ``store_down`` (the answer is the store's 503) the entry is counted missing at once."""
    if store_down:
        journal.unwritten()
        return
    if journal.limit <= 0:
        with contextlib.suppress(StoreUnavailable):  # as below: the answer stands
            await journal.keep_none()
        return
    try:
        now = await clock.now()
    except StoreUnavailable:
        # The journal is diagnostics: a store outage must not turn an answer into a 503. The
        # entry is lost: counted, so a reader is not told the journal is whole.
        journal.failed += 1
        return
    scope = request.scope
    # The values behind ``request.state``, read without an AttributeError per absent one.
    state: dict[str, Any] = scope.get("state") or {}
    files: tuple[Any, ...] = ()
    if "fields" in state or "files" in state:
        fields, listed_files = _body_fields(state)
        files = tuple(listed_files)
    else:  # no body read (a poll): what `_body_fields` says of it, without the call
        fields = None
    unknown = state.get("unknown_fields")
    pending = _Pending(
        (
            time.time(),
            now,
            endpoint,
            scope["method"],
            scope["path"],
            scope.get("query_string", b""),
            # (bytes, bytes) pairs: the scope's list could still be changed by its owner.
            tuple(scope["headers"]),
            state.get("api_key"),
            fields,
            files,
            status,
            state.get("task_id"),
            state.get("fault"),
            time.perf_counter() - started,
            # None: not a submission whose body could be read (D-13); cut now, it may be long.
            None if unknown is None else listed(unknown),
        )
    )
    # As above, the answer stands, the entry counted lost.
    try:
        await journal.append(pending)
    except StoreUnavailable:
        journal.failed += 1
