"""The dashboard: ``GET /_emulator/ui``, server-rendered pages with a little JavaScript, served
by the emulator itself (docs/dashboard.md).

Everything it does goes through the control plane's operations (``emulator/usecases/steer.py``,
the request's ``Steering``); it keeps no state of its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from ..deferred import Deferred

PREFIX = "/_emulator/ui"
Endpoint = Callable[[Request], Awaitable[Response]]


def _lazy(name: str) -> Endpoint:
    """``module.function`` of this package, imported at its first request: an emulator that
    never serves the dashboard (the pytest fixture makes one per test) never loads it."""
    module, _, function = name.partition(".")

    async def run(request: Request) -> Response:
        handler: Endpoint = getattr(importlib.import_module(f"{__name__}.{module}"), function)
        return await handler(request)

    return run


def _by_method(handlers: dict[str, Endpoint]) -> Endpoint:
    """One route per path, so a wrong method gets a 405 whose Allow lists every method."""

    async def run(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return run


def routes() -> list[BaseRoute]:
    """The dashboard's routes, built when a request first reaches them (`Deferred`): an app
    that never serves the dashboard (most of the pytest fixture's) never builds them."""
    return [Deferred(_routes)]


def _routes() -> list[BaseRoute]:
    from starlette.staticfiles import StaticFiles

    get, post = ["GET"], ["POST"]
    login = _by_method({"GET": _lazy("pages.login_form"), "POST": _lazy("actions.login")})
    table: list[tuple[str, Endpoint, list[str]]] = [
        ("", _lazy("pages.tasks_page"), get),
        ("/tasks/{task_id}", _lazy("pages.task_page"), get),
        ("/tasks/{task_id}/outcome", _lazy("actions.end_task"), post),
        ("/tasks/{task_id}/pictures/{index}", _lazy("pages.picture"), get),
        ("/clock/advance", _lazy("actions.advance_clock"), post),
        ("/reset", _lazy("actions.reset"), post),
        ("/faults", _lazy("pages.faults_page"), get),
        ("/faults/add", _lazy("actions.add_fault"), post),
        ("/faults/remove", _lazy("actions.remove_fault"), post),
        ("/billing", _lazy("pages.billing_page"), get),
        ("/balances/set", _lazy("actions.set_balance"), post),
        ("/balances/change", _lazy("actions.change_balance"), post),
        ("/settings", _lazy("pages.settings_page"), get),
        ("/login", login, ["GET", "POST"]),
        ("/logout", _lazy("actions.logout"), post),
        ("/live/tasks", _lazy("pages.live_tasks"), get),
        ("/live/tasks/{task_id}", _lazy("pages.live_task"), get),
        ("/live/faults", _lazy("pages.live_faults"), get),
        ("/live/clock", _lazy("pages.live_clock"), get),
    ]
    static = StaticFiles(directory=Path(__file__).resolve().parent / "static")
    return [
        Route(PREFIX + path, endpoint, methods=methods) for path, endpoint, methods in table
    ] + [Mount(PREFIX + "/static", app=static, name="ui-static")]


__all__ = ["PREFIX", "routes"]
