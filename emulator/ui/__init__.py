"""The dashboard: ``GET /_emulator/ui``, server-rendered pages with a little JavaScript, served
by the emulator itself (docs/dashboard.md).

Everything it does goes through the control plane's operations (``emulator/steering.py``) on
the request's ``Emulator``; it keeps no state of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .access import PREFIX

Endpoint = Callable[[Request], Awaitable[Response]]


def _by_method(handlers: dict[str, Endpoint]) -> Endpoint:
    """One route per path, so a wrong method gets a 405 whose Allow lists every method."""

    async def run(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return run


def routes() -> list[BaseRoute]:
    from . import actions, pages

    get, post = ["GET"], ["POST"]
    table: list[tuple[str, Endpoint, list[str]]] = [
        ("", pages.tasks_page, get),
        ("/tasks/{task_id}", pages.task_page, get),
        ("/tasks/{task_id}/outcome", actions.end_task, post),
        ("/clock/advance", actions.advance_clock, post),
        ("/reset", actions.reset, post),
        ("/faults", pages.faults_page, get),
        ("/faults/add", actions.add_fault, post),
        ("/faults/remove", actions.remove_fault, post),
        ("/billing", pages.billing_page, get),
        ("/balances/set", actions.set_balance, post),
        ("/balances/change", actions.change_balance, post),
        ("/settings", pages.settings_page, get),
        ("/login", _by_method({"GET": pages.login_form, "POST": actions.login}), ["GET", "POST"]),
        ("/logout", actions.logout, post),
        ("/live/tasks", pages.live_tasks, get),
        ("/live/tasks/{task_id}", pages.live_task, get),
        ("/live/faults", pages.live_faults, get),
        ("/live/clock", pages.live_clock, get),
    ]
    static = StaticFiles(directory=Path(__file__).resolve().parent / "static")
    return [
        Route(PREFIX + path, endpoint, methods=methods) for path, endpoint, methods in table
    ] + [Mount(PREFIX + "/static", app=static, name="ui-static")]


__all__ = ["PREFIX", "routes"]
