"""httpx transports that call an ASGI app in-process: no port, no server thread.

httpx ships an async ASGI transport only; the sync one here runs each request to completion
on a private event loop in the calling thread. Both turn the emulator's connection-level
faults into the errors a real network gives: a dropped connection becomes
``httpx.RemoteProtocolError`` and a hung answer ``httpx.ReadTimeout`` once the request's read
timeout passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


async def _call(app: ASGIApp, request: httpx.Request, body: bytes) -> httpx.Response:
    from .app import DropConnection  # late: keep this module importable on its own

    read_timeout = (request.extensions.get("timeout") or {}).get("read") or 30.0
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.url.scheme,
        "path": request.url.path,
        "raw_path": request.url.raw_path.split(b"?")[0],
        "query_string": request.url.query,
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "client": ("127.0.0.1", 50000),
        "server": (request.url.host, request.url.port or 80),
        "extensions": {},
    }
    sent_body = False
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    gave_up = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent_body, gave_up
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        # The app waits for the client to go: a real client gives up at its read timeout.
        await asyncio.sleep(read_timeout)
        gave_up = True
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except DropConnection:
        if gave_up:
            raise httpx.ReadTimeout(
                "the emulator held the answer (hang fault)", request=request
            ) from None
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        ) from None
    return httpx.Response(status, headers=headers, content=b"".join(chunks), request=request)


class ASGITransport(httpx.BaseTransport):
    """Sync in-process transport: ``httpx.Client(transport=ASGITransport(app))``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # One private loop for the transport's life: starting a loop per request costs more
        # than the request itself. A bare loop, not an ``asyncio.Runner``: a runner installs and
        # restores a SIGINT handler on every run, a third of a fixture request's overhead.
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        return self.run(_call(self.app, request, body))

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` on the transport's loop, where the app's store connections live."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(awaitable)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:  # what asyncio.Runner.close does
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()


class AsyncASGITransport(httpx.AsyncBaseTransport):
    """Async in-process transport with the same fault mapping as `ASGITransport`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        return await _call(self.app, request, body)
