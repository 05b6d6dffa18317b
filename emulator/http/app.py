"""The ASGI application of one emulator: `create_app`, the routes it serves, and the one thing
Starlette cannot do for it: drop a connection without answering (a fault effect)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ..config import Settings
from ..usecases.emulator import Emulator
from .dispatch import Dispatch
from .effects import DropConnection
from .privates import abort_connection, anchor_at_end
from .terminal import TerminalAnswers

if TYPE_CHECKING:
    from starlette.routing import BaseRoute


#: `EmulatorApp.dispatch` before the first request decided it.
_UNDECIDED: Any = object()


class EmulatorApp(Starlette):
    """Starlette, plus the one thing it cannot do: drop a connection without answering; and
    the hot routes (submission, poll, result download) served without Starlette's
    per-request layers (`dispatch.Dispatch`)."""

    #: False: every request through Starlette's layers (tests compare the two ways).
    direct_routes = True
    #: Decided at the first request, as Starlette builds its middleware stack then.
    dispatch: Dispatch | None = _UNDECIDED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] == "http":
                # Some HTTP parsers (httptools) accept headers of any size; the emulator does
                # not. Item access: State's attribute access costs µs per request (see
                # guard.emulator_of).
                limit: int = self.state["emulator"].config.settings.max_header_bytes
                headers = scope["headers"]
                # Each name and value, plus ": " and CRLF. A plain loop: for the few headers
                # of a request, half the instructions of sum(map(len, chain(...))) (callgrind).
                size = 4 * len(headers)
                for name, value in headers:
                    size += len(name) + len(value)
                if size > limit:
                    await _headers_too_large(limit)(scope, receive, send)
                    return
                dispatch = self.dispatch
                if dispatch is _UNDECIDED:
                    dispatch = self.dispatch = Dispatch.of(self) if self.direct_routes else None
                if dispatch is not None:
                    target = dispatch.match(scope)
                    if target is not None:
                        await dispatch.serve(scope, receive, send, *target)
                        return
            await super().__call__(scope, receive, send)
        except DropConnection:
            if not abort_connection(send):
                raise  # in-process transports: the client sees the exception


def _headers_too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {
            "code": "header_too_large",
            "message": f"request headers are larger than the limit of {limit} bytes",
            "data": None,
        },
        status_code=431,
    )


@functools.cache
def _routes() -> tuple[list[BaseRoute], dict[Any, Any]]:
    """Routes and exception handlers, built once per process: they hold no state (handlers find
    their emulator in ``request.app.state``), and the pytest fixture makes an app per test."""
    from . import admin, api, openapi, readiness, ui
    from .errors import exception_handlers

    served = api.routes() + admin.routes() + readiness.routes() + openapi.routes() + ui.routes()
    served += admin.slash_routes()  # last: only what no route above matched
    anchor_at_end(served)  # a path ending in %0A is no route's (Starlette's "$" allows it)
    return served, exception_handlers()


def _middleware(settings: Settings) -> list[Middleware]:
    """Opt-in layers only: with the defaults the app is exactly as fast as without them (and
    their modules are not imported: the pytest fixture's first setup, docs/profile.md)."""
    layers = []
    if settings.log_format == "json":
        from .access_log import AccessLog

        layers.append(Middleware(AccessLog))
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        # Starlette's own: preflights answered, the allowed origin echoed, nothing for others.
        layers.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["*"],
                expose_headers=["Retry-After", "X-Emulator-Worker"],
                max_age=600,
            )
        )
    return layers


def create_app(settings: Settings | None = None) -> EmulatorApp:
    """The ASGI application of one emulator built from ``settings``."""
    routes, handlers = _routes()
    settings = settings or Settings()
    emulator = Emulator(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await emulator.start()
        yield
        await emulator.store.close()

    app = EmulatorApp(
        routes=list(routes),
        exception_handlers=dict(handlers),
        lifespan=lifespan,
        middleware=_middleware(settings),
    )
    app.state.emulator = emulator
    app.state.terminal_answers = TerminalAnswers()
    return app


__all__ = ["DropConnection", "EmulatorApp", "create_app"]
