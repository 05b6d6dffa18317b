"""Every private API of Starlette and uvicorn the emulator still uses, in one place.

Each is here because the public way costs what a request should not, or does not exist; each
has a test in ``tests/test_privates.py`` that fails, naming the dependency and its version,
if an upgrade changes it. (uvicorn's protocol classes, subclassed to bound request heads, are
the other such use: ``protocols.py``, checked by ``tests/test_http_guard.py``.)

- ``read_body``: the ASGI messages read directly, as ``request.stream()`` would, and the
  request marked the same way (Starlette's ``_stream_consumed`` and ``_is_disconnected``) so
  a later ``request.body()`` raises instead of waiting for messages that never come. Reading
  through ``request.stream()`` (an async generator per request) measured +5 to +10 us on an
  in-process submission of ~150 us.
- ``PrebuiltResponse``: a Response whose body and headers are already made, set as the
  attributes ``Response.__call__`` sends (``status_code``, ``raw_headers``, ``body``,
  ``background``) without ``Response.__init__``, which renders the body and rebuilds
  Content-Length and Content-Type on every answer: the JSON answers of the two hot routes and
  a finished task's kept answer (3-5 % of a poll's instructions, docs/profile.md).
- ``abort_connection``: there is no ASGI message for "drop this connection without an
  answer" (a fault effect); uvicorn's ``send`` is a bound method of the connection's request
  cycle, which holds the transport.
- ``anchor_at_end``: Starlette compiles a route's path into ``^...$`` (its ``path_regex``),
  and Python's ``$`` also matches before a final newline, so ``POST /v1/images/tasks%0A``
  reached the submission and ``POST /_emulator/reset%0A`` reset the emulator. Each route's
  ``path_regex`` is compiled again ending in ``\\Z``; Starlette's router and ``Mount`` read
  only that attribute to match. There is no public option for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Send

from ..errors import PayloadTooLarge
from .headers import first_header


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes (413 past it, before reading it all when
    ``Content-Length`` says so); ``ClientDisconnect`` if the client went away."""
    declared = (first_header(request.scope, b"content-length") or b"").decode("latin-1")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        if chunk:
            chunks.append(chunk)
    request._stream_consumed = True
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class PrebuiltResponse(Response):
    """A Response of ``body`` with exactly ``raw_headers`` (a list of its own: middleware and
    fault effects may add to it), made without ``Response.__init__``."""

    def __init__(
        self, body: bytes, raw_headers: list[tuple[bytes, bytes]], status_code: int = 200
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


def abort_connection(send: Send) -> bool:
    """Drop the connection ``send`` answers on, without a response, if uvicorn serves it;
    False (nothing done) for any other server or an in-process transport."""
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        return False
    transport.abort()
    # The drop is intended: tell uvicorn, or it logs "returned without starting response".
    if hasattr(cycle, "disconnected"):
        cycle.disconnected = True
    return True


def anchor_at_end(routes: Iterable[BaseRoute]) -> None:
    """Make each route's path regex end at the path's end, never before a final newline
    (``\\Z`` for Starlette's ``$``): a path with a trailing ``%0A`` is then no route's, a 404.
    A parameter that takes any character but "/" still takes the newline (a poll of
    ``abc%0A`` is a poll of the task ``abc\\n``), as before."""
    for route in routes:
        regex = getattr(route, "path_regex", None)
        if isinstance(regex, re.Pattern) and regex.pattern.endswith("$"):
            route.path_regex = re.compile(regex.pattern[:-1] + r"\Z", regex.flags)  # type: ignore[attr-defined]


__all__ = ["PrebuiltResponse", "abort_connection", "anchor_at_end", "read_body"]
