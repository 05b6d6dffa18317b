"""When the direct dispatch of the hot routes (emulator/http/dispatch.py) serves a request and
when it steps aside: an app with middleware, or changed in a way the dispatch does not
reproduce (debug, a body limit, a status handler, reordered routes), is served by Starlette's
own layers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.middleware import Middleware

from emulator import create_app
from emulator.http.app import EmulatorApp

from .dispatch_pair import KEY, SETTINGS, Pair, Sent, send_to


def test_the_dispatch_serves_the_two_routes_of_an_app_without_middleware() -> None:
    pair = Pair()
    try:
        auth = [(b"authorization", f"Bearer {KEY}".encode())]
        sent = Sent("GET", "/v1/images/tasks/task_unknown", headers=auth)
        direct, starlette = (pair.loop.run_until_complete(send_to(a, sent)) for a in pair.apps)
        assert direct.messages[0]["status"] == starlette.messages[0]["status"] == 404
        # Only Starlette's ExceptionMiddleware sets this key: the direct app did not use it.
        assert "starlette.exception_handlers" in starlette.keys - direct.keys
        assert pair.direct.dispatch is not None
    finally:
        pair.close()


@pytest.mark.parametrize(
    "changes", [{"cors_origins": ("https://a.example",)}, {"log_format": "json"}]
)
def test_opt_in_middleware_sends_every_request_through_starlette(changes: dict[str, Any]) -> None:
    pair = Pair(SETTINGS.replace(**changes))
    try:
        auth = [(b"authorization", f"Bearer {KEY}".encode()), (b"origin", b"https://a.example")]
        pair.send(Sent("GET", "/v1/images/tasks/task_unknown", headers=auth))
        assert pair.direct.dispatch is None
    finally:
        pair.close()


def test_a_middleware_added_before_the_first_request_turns_the_dispatch_off() -> None:
    app = create_app(SETTINGS)

    class Passing:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    app.user_middleware.append(Middleware(Passing))
    loop = asyncio.new_event_loop()
    try:
        got = loop.run_until_complete(send_to(app, Sent("GET", "/v1/images/tasks/x")))
        assert got.messages[0]["status"] == 401
        assert app.dispatch is None
    finally:
        loop.close()


def _debug(app: EmulatorApp) -> None:
    app.debug = True


def _body_limit(app: EmulatorApp) -> None:
    app.max_body_size = 10


def _status_handler(app: EmulatorApp) -> None:
    app.exception_handlers[404] = app.exception_handlers[Exception]


def _routes_reordered(app: EmulatorApp) -> None:
    app.router.routes.reverse()


@pytest.mark.parametrize("change", [_debug, _body_limit, _status_handler, _routes_reordered])
def test_an_app_the_dispatch_does_not_reproduce_is_served_by_starlette(change: Any) -> None:
    app = create_app(SETTINGS)
    change(app)
    loop = asyncio.new_event_loop()
    try:
        got = loop.run_until_complete(send_to(app, Sent("GET", "/v1/images/tasks/x")))
        assert "starlette.exception_handlers" in got.keys
        assert app.dispatch is None
    finally:
        loop.close()
