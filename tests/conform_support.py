"""Deviating services for conform's tests: the real emulator behind a small ASGI middleware that
changes one thing, served by uvicorn on a free loopback port in a thread.

`Deviate` buffers each exchange and lets a test edit the request body and the answer;
`Served` runs an app on 127.0.0.1; `run_conform` runs the command and captures what it prints.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import anyio
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator import Settings, create_app
from emulator.cli import main

KEY = "sk-drift"
SECOND_KEY = "sk-drift-second"
#: Answer = (status, headers, body); a mutation returns the changed answer.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
Mutation = Callable[[Scope, bytes, Answer], Answer]
RequestEdit = Callable[[Scope, bytes], bytes]
ScopeEdit = Callable[[Scope], Scope]
#: Seconds to hold an answer before sending it (a slow service).
Delay = Callable[[Scope, Answer], float]
#: Whether to cut the connection instead of sending the answer.
Drop = Callable[[Scope, Answer], bool]


class ConnectionCut(Exception):
    """Raised after the answer's start: uvicorn then closes the connection mid-answer."""


class Deviate:
    """ASGI middleware: optionally edits the request, then the buffered answer."""

    def __init__(
        self,
        app: ASGIApp,
        answer: Mutation | None = None,
        request: RequestEdit | None = None,
        scope_edit: ScopeEdit | None = None,
        delay: Delay | None = None,
        drop: Drop | None = None,
    ) -> None:
        self.app, self.answer, self.request, self.scope_edit = app, answer, request, scope_edit
        self.delay, self.drop = delay, drop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if self.scope_edit is not None:
            scope = self.scope_edit(dict(scope))
        if self.request is not None:
            body = self.request(scope, body)
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            scope = dict(scope, headers=[*headers, (b"content-length", str(len(body)).encode())])
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, replay, capture)
        status, headers, out = start["status"], list(start.get("headers", [])), b"".join(chunks)
        if self.answer is not None:
            status, headers, out = self.answer(scope, body, (status, headers, out))
        if self.delay is not None:
            await anyio.sleep(self.delay(scope, (status, headers, out)))
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(out)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if self.drop is not None and self.drop(scope, (status, headers, out)):
            raise ConnectionCut(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.body", "body": out})


class Served:
    """An ASGI app on a free 127.0.0.1 port, in a thread of this process."""

    #: Whether uvicorn runs the app's lifespan ("off": the in-process apps start themselves).
    lifespan: ClassVar[Literal["auto", "on", "off"]] = "off"

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="critical", lifespan=self.lifespan
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:  # readiness, bounded: not a timing assumption
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def drift_app(
    answer: Mutation | None = None,
    request: RequestEdit | None = None,
    scope_edit: ScopeEdit | None = None,
    delay: Delay | None = None,
    drop: Drop | None = None,
    **settings: Any,
) -> ASGIApp:
    """The emulator (two keys, per_poll clock: a task ends at its third poll) behind a deviation."""
    chosen: dict[str, Any] = {"seed": 7, "api_keys": (KEY, SECOND_KEY), "clock": "per_poll"}
    chosen.update(settings)
    return Deviate(create_app(Settings(**chosen)), answer, request, scope_edit, delay, drop)


class Servers:
    """Deviating services started by one test, all stopped when it ends (a context manager)."""

    def __init__(self) -> None:
        self.running: list[Served] = []

    def start(self, *args: Any, **kwargs: Any) -> str:
        """Serve `drift_app` (same arguments); returns its base URL."""
        self.running.append(Served(drift_app(*args, **kwargs)))
        return self.running[-1].base_url

    def serve(self, app: ASGIApp) -> str:
        self.running.append(Served(app))
        return self.running[-1].base_url

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        for served in self.running:
            served.stop()


#: A careful run, as a user runs it against the paid service.
CAREFUL = ("--allow-generation", "--max-examples", "10")


def run_conform(base_url: str, *extra: str, capture: Callable[[], str]) -> tuple[int, str]:
    code = main(
        [
            "conform",
            "--base-url",
            base_url,
            "--api-key",
            KEY,
            "--seed",
            "3",
            "--rate-limit",
            "",
            "--poll-interval",
            "0",
            *extra,
        ]
    )
    return code, capture()


# -- building blocks of deviations -------------------------------------------------------------
def is_task_route(scope: Scope) -> bool:
    return str(scope["path"]).startswith("/v1/images/tasks")


def is_submit(scope: Scope) -> bool:
    return str(scope["method"]) == "POST" and str(scope["path"]) == "/v1/images/tasks"


def is_poll(scope: Scope) -> bool:
    return scope["method"] == "GET" and str(scope["path"]).startswith("/v1/images/tasks/")


def is_picture(headers: list[tuple[bytes, bytes]]) -> bool:
    """A result picture, whatever its URL looks like (result URLs are opaque)."""
    return any(k.lower() == b"content-type" and v.startswith(b"image/") for k, v in headers)


def task_edit(
    edit: Callable[[dict[str, Any], Scope], None], where: Callable[[Scope], bool] = is_task_route
) -> Mutation:
    """Apply ``edit`` to the task object of every successful task-route answer ``where`` says."""

    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, body = answer
        if 200 <= status < 300 and where(scope):
            data = json.loads(body)
            edit(data.get("data", data), scope)
            body = json.dumps(data).encode()
        return status, headers, body

    return mutate


def json_request_edit(edit: Callable[[dict[str, Any], Scope], None]) -> RequestEdit:
    """Apply ``edit`` to every JSON submission body before the emulator reads it."""

    def change(scope: Scope, body: bytes) -> bytes:
        if not is_submit(scope):
            return body
        try:
            data = json.loads(body)
        except ValueError:
            return body
        if isinstance(data, dict):
            edit(data, scope)
            return json.dumps(data).encode()
        return body

    return change


def relative(url: Any) -> Any:
    if not isinstance(url, str):
        return url
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None
