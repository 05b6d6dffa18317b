"""httpx transports that call an ASGI app in-process: no port, no server thread per request.

Both run the app on its `AppLoop` (emulator/testing/app_loop.py), the one loop its store belongs to:
the sync transport drives that loop in place when it can (a sync test) and hands it the work
otherwise (an async test, another thread); the async one awaits the work from the caller's
asyncio loop. Both turn the emulator's connection-level faults into the errors a real network
gives: a dropped connection becomes ``httpx.RemoteProtocolError`` and a hung answer
``httpx.ReadTimeout`` once the request's read timeout passes.

Users reach them as ``image_emulator.transport`` and ``image_emulator.async_transport`` for
clients of their own. Closing such a client does not close the emulator: the loop is the
fixture's, closed at the end of the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from .app_loop import AppLoop, Runner

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]
DEFAULT_PORTS = {"http": 80, "https": 443}


async def _call(app: ASGIApp, request: httpx.Request, body: bytes) -> httpx.Response:
    read_timeout = (request.extensions.get("timeout") or {}).get("read") or 30.0
    url = request.url
    # The path as sent and the query, in one step (a path never holds a "?").
    raw_path, _, query = url.raw_path.partition(b"?")
    scheme = url.scheme
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": scheme,
        "path": url.path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "client": ("127.0.0.1", 50000),
        "server": (url.host, url.port or DEFAULT_PORTS.get(scheme, 80)),
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
    except BaseException as exc:
        # Imported here, on the rare way out: keeps this module importable on its own, and
        # an import statement on every request was ~2.6k instructions.
        from ..http.effects import DropConnection

        if not isinstance(exc, DropConnection):
            raise
        if gave_up:
            raise httpx.ReadTimeout(
                "the emulator held the answer (hang fault)", request=request
            ) from None
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        ) from None
    content = b"".join(chunks)
    # A stream, as httpx's own transports answer: ``content=`` made httpx encode the body and
    # read it in the constructor (~10 µs a request), before the client wraps the stream, so
    # ``response.elapsed`` was never set. What ``content=`` added is kept: the Content-Length
    # of a body the app sent without one.
    if content:
        # A plain loop: a third of the instructions of any() over a generator (callgrind).
        for name, _ in headers:
            if name.lower() == b"content-length":
                break
        else:
            headers.append((b"Content-Length", str(len(content)).encode("ascii")))
    return httpx.Response(
        status, headers=headers, stream=httpx.ByteStream(content), request=request
    )


class ASGITransport(httpx.BaseTransport):
    """Sync in-process transport: ``httpx.Client(transport=ASGITransport(app, loop))``.

    Without ``loop`` it makes a private one, closed with the transport.
    """

    def __init__(self, app: ASGIApp, loop: Runner | None = None) -> None:
        self.app = app
        #: A private loop, closed with the transport.
        self._own: AppLoop | None = None
        if loop is None:
            loop = self._own = AppLoop()
        self.loop: Runner = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        return self.loop.run(_call(self.app, request, body))

    def close(self) -> None:
        if self._own is not None:
            self._own.close()


class AsyncASGITransport(httpx.AsyncBaseTransport):
    """Async in-process transport with the same fault mapping as `ASGITransport`.

    With ``loop`` the app runs there (the caller's loop awaits it); without, on the caller's.
    """

    def __init__(self, app: ASGIApp, loop: Runner | None = None) -> None:
        self.app = app
        self.loop = loop

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        if self.loop is None:
            return await _call(self.app, request, body)
        return await self.loop.arun(_call(self.app, request, body))
