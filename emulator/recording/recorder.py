"""``serve --upstream URL --record DIR``: a proxy in front of the real service that keeps a
cassette of every exchange.

The two task routes are forwarded with the caller's own key; the client gets the real answer
(status, headers, body) as the upstream sent it. Each exchange is appended to the cassette with
its secrets masked (`masking`). With ``record_results`` the recorder also downloads each result
picture once, without the key, when a poll first shows it, and keeps it by hash; the client
still fetches its pictures from where the answer points.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..conformance.checks import unwrap
from ..conformance.lifecycle import result_urls
from ..errors import EmulatorError, PayloadTooLarge
from ..http.errors import exception_handlers
from ..http.privates import anchor_at_end
from .cassette import CassetteWriter, Exchange, encode_body
from .masking import Masker, bearer_key, key_id
from .upstream import Reply, Upstream, UpstreamError

SUBMIT_PATH = "/v1/images/tasks"
POLL_PATH = "/v1/images/tasks/{task_id}"
#: Request headers written to the cassette (the key masked).
RECORDED_REQUEST_HEADERS = ("content-type", "authorization", "accept")
#: Answer headers written to the cassette: what a client acts on.
RECORDED_RESPONSE_HEADERS = (
    "content-type",
    "retry-after",
    "www-authenticate",
    "location",
    "allow",
    "cache-control",
)
#: Result URLs remembered as fetched (so each picture is downloaded once); then forgotten.
MAX_REMEMBERED_RESULTS = 100_000


def recorded_response_header(name: str) -> bool:
    return name in RECORDED_RESPONSE_HEADERS or name.startswith(("x-ratelimit-", "ratelimit"))


@dataclass(frozen=True, slots=True)
class RecorderOptions:
    upstream: str
    directory: Path
    #: Download result pictures into the cassette's blobs (by hash).
    record_results: bool = False
    #: Seconds an exchange with the upstream may take, and to connect.
    timeout: float = 60.0
    connect_timeout: float = 10.0
    #: Largest request body taken from a client, task answer and picture read from upstream.
    max_body_bytes: int = 32 * 1024 * 1024
    max_answer_bytes: int = 1024 * 1024
    max_result_bytes: int = 64 * 1024 * 1024


class Recorder:
    """One recording: the upstream client, the cassette writer, the clock of the lines."""

    def __init__(
        self,
        options: RecorderOptions,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options, self.clock = options, clock
        self.upstream = Upstream(
            options.upstream,
            timeout=options.timeout,
            connect_timeout=options.connect_timeout,
            max_answer_bytes=options.max_answer_bytes,
            max_result_bytes=options.max_result_bytes,
            transport=transport,
        )
        self.writer = CassetteWriter(options.directory)
        self._fetched: set[str] = set()

    async def start(self) -> None:
        from .. import __version__

        record = {
            "v": 1,
            "kind": "session",
            "t": self.clock(),
            "upstream": self.upstream.base_url,
            "recorder": f"image-task-emulator {__version__}",
            "record_results": self.options.record_results,
        }
        await anyio.to_thread.run_sync(self.writer.append, record)

    async def close(self) -> None:
        await self.upstream.aclose()
        self.writer.close()

    async def write(
        self, exchange: Exchange, bodies: tuple[bytes, bytes], *, picture: bool = False
    ) -> None:
        """Append ``exchange`` with its (masked) request and response bodies; a ``picture``
        answer always goes to a blob (pictures are found by hash). A HEAD (which Starlette
        answers on the poll route) is forwarded but not kept: it is not a poll, and a replay
        would play its empty answer inside the task's polls."""
        if exchange.method == "HEAD":
            return

        def run() -> None:
            record = exchange.to_record()
            request_body = encode_body(bodies[0], self.writer.store_blob)
            response_body = encode_body(bodies[1], self.writer.store_blob)
            if picture and bodies[1]:
                response_body = {"blob": self.writer.store_blob(bodies[1]), "size": len(bodies[1])}
            if request_body is not None:
                record["request"]["body"] = request_body
            if response_body is not None:
                record["response"]["body"] = response_body
            self.writer.append(record)

        await anyio.to_thread.run_sync(run)

    # -- one client request --------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        kind = "submit" if request.method == "POST" else "poll"
        _check_task_id(request.path_params.get("task_id"))
        body = await _read_bounded(request, self.options.max_body_bytes)
        headers = {k.lower(): v for k, v in request.headers.items()}
        path, query = request.url.path, request.url.query
        t = self.clock()
        masker = Masker()
        key = bearer_key(headers)
        recorded = {k: headers[k] for k in RECORDED_REQUEST_HEADERS if k in headers}
        shared: dict[str, Any] = {
            "line": 0,
            "kind": kind,
            "t": t,
            "method": request.method,
            "path": path,
            "request_headers": masker.headers(recorded),
            "key_id": key_id(key) if key else None,
        }
        shared["query"] = masker.query(query)
        request_body, _ = masker.body(body)
        task_id = request.path_params.get("task_id")
        try:
            reply = await self.upstream.forward(request.method, path, query, headers, body)
        except UpstreamError as exc:
            said = masker.text_urls(str(exc))
            failed = Exchange(**shared, task_id=task_id, error=said, upstream_status=exc.status)
            await self.write(failed, (request_body, b""))
            what = "did not answer" if exc.status is None else f"answered {exc.status}, but"
            raise EmulatorError(
                f"the upstream service {what}: {said}",
                status_code=502,
                code="upstream_unavailable",
            ) from None
        answer, _ = masker.body(reply.body)
        data = _json(reply.body)
        unwrapped = unwrap(data) if 200 <= reply.status < 300 else None
        if kind == "submit" and unwrapped is not None:
            task_id = str(unwrapped[1].get("task_id"))
        kept, notes = _recorded_headers(reply, masker)
        exchange = Exchange(
            **shared,
            status=reply.status,
            response_headers=kept,
            latency=reply.latency,
            task_id=task_id,
            notes=notes,
        )
        await self.write(exchange, (request_body, answer))
        if self.options.record_results and unwrapped and unwrapped[1].get("status") == "succeeded":
            await self._fetch_results(task_id or "", result_urls(unwrapped[1]))
        response = Response(reply.body, status_code=reply.status)
        # The upstream's own bytes: a value need not be Latin-1 ("x-note: 日本" in UTF-8).
        response.raw_headers.extend(reply.raw_headers)
        return response

    async def _fetch_results(self, task_id: str, urls: list[str]) -> None:
        for index, url in enumerate(urls):
            if url in self._fetched:
                continue
            if len(self._fetched) >= MAX_REMEMBERED_RESULTS:
                self._fetched.clear()
            self._fetched.add(url)
            masker = Masker()
            masked_url = masker.url(url)
            shared: dict[str, Any] = {
                "line": 0,
                "kind": "result",
                "t": self.clock(),
                "method": "GET",
                "path": httpx.URL(masked_url).path,
                "task_id": task_id,
                "url": masked_url,
                "index": index,
            }
            try:
                reply = await self.upstream.fetch_result(url)
            except UpstreamError as exc:
                said = masker.text_urls(str(exc))
                failed = Exchange(**shared, error=said, upstream_status=exc.status)
                await self.write(failed, (b"", b""))
                continue
            kept, notes = _recorded_headers(reply, masker)
            exchange = Exchange(
                **shared,
                status=reply.status,
                response_headers=kept,
                latency=reply.latency,
                notes=notes,
            )
            is_picture = reply.header("content-type").startswith("image/")
            data = reply.body
            if not is_picture:
                data, _ = masker.body(data)
            await self.write(exchange, (b"", data), picture=is_picture and reply.status == 200)


#: What no task id has (as the emulator's own ids): control characters, C0 and C1.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _check_task_id(task_id: str | None) -> None:
    """404 for a poll of an id no task can have, before anything is sent: a control character
    cannot even be put in the upstream's URL."""
    if task_id is not None and _CONTROL.search(task_id):
        shown = ascii(task_id[:80])
        raise EmulatorError(
            f"task {shown} is not forwarded: a task id has no control characters "
            "(U+0000-U+001F, U+007F-U+009F)",
            status_code=404,
            code="not_forwarded",
        )


def _recorded_headers(reply: Reply, masker: Masker) -> tuple[dict[str, str], tuple[str, ...]]:
    """The answer's headers a cassette keeps (masked), and a note for each one it cannot: a
    value that is not UTF-8 text (a line is text; the replay sends values back as UTF-8)."""
    kept: dict[str, str] = {}
    notes: list[str] = []
    for raw_name, raw_value in reply.raw_headers:
        name = raw_name.decode("latin-1").lower()
        if not recorded_response_header(name):
            continue
        try:
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            notes.append(f"response header {name}: its value is not UTF-8 text; not kept")
            continue
        kept[name] = masker.url(value) if name == "location" else masker.text_urls(value)
    return kept, tuple(notes)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeply
        return None


async def _read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than the recorder's limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(
                f"the request body is larger than the recorder's limit of {limit}"
            )
    return bytes(body)


async def _not_forwarded(request: Request) -> Response:
    raise EmulatorError(
        f"{request.method} {request.url.path} is not forwarded: the recorder forwards only "
        f"POST {SUBMIT_PATH} and GET {POLL_PATH}",
        status_code=404,
        code="not_forwarded",
    )


def create_recorder_app(
    options: RecorderOptions,
    *,
    clock: Callable[[], float] = time.time,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The recording proxy as an ASGI app. ``clock`` times the lines (a test passes the
    upstream's virtual clock); ``transport`` reaches the upstream (default: the network)."""
    recorder = Recorder(options, clock, transport)

    async def forward(request: Request) -> Response:
        return await recorder.handle(request)

    async def health(request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "mode": "record", "upstream": recorder.upstream.base_url}
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await recorder.start()
        try:
            yield
        finally:
            await recorder.close()

    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes: list[BaseRoute] = [
        Route(SUBMIT_PATH, forward, methods=["POST"]),
        Route(POLL_PATH, forward, methods=["GET"]),
        Route("/_recording/health", health, methods=["GET"]),
        Route("/{path:path}", _not_forwarded, methods=every),
    ]
    anchor_at_end(routes)  # a path ending in %0A is no route's (Starlette's "$" allows it)
    app = Starlette(
        routes=routes,
        exception_handlers=dict(exception_handlers()),
        lifespan=lifespan,
    )
    app.state.recorder = recorder
    return app


__all__ = ["Recorder", "RecorderOptions", "create_recorder_app"]
