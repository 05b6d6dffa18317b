"""How the dashboard answers: its templates, the context every page shares, headers that let
a page run nothing but the dashboard's own script, and the guards of its three kinds of route
(pages, forms, live JSON)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ...core.query import query_values
from ...errors import EmulatorError
from ..guard import emulator_of
from .access import (
    PREFIX,
    check_same_site,
    csrf_token,
    safe_next,
    set_cookies,
    signed_in,
    token_required,
)
from .forms import Form, read_form
from .rows import seconds_text

if TYPE_CHECKING:
    from starlette.templating import Jinja2Templates

    from ...core.clock import Clock

HERE = Path(__file__).resolve().parent
Page = Callable[[Request], Awaitable[Response]]
Action = Callable[[Request, Form], Awaitable[Response]]
Live = Callable[[Request], Awaitable[dict[str, Any]]]


@functools.cache
def templates() -> Jinja2Templates:
    """The page templates, compiled once per process (they hold no emulator's state).

    Imported here: an emulator that never serves a page (the pytest fixture) never loads
    Jinja2. Autoescaping is on for every template: prompts, codes and keys are user input.
    """
    import jinja2
    from starlette.templating import Jinja2Templates

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seconds"] = seconds_text
    return Jinja2Templates(env=env)


def security_headers() -> dict[str, str]:
    """No inline script or style, nothing from elsewhere: a prompt that slipped past the
    escaping still could not run. (Result pictures come through the dashboard's own route.)"""
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


async def clock_state(mode: str, clock: Clock) -> dict[str, Any]:
    """The clock as the header shows it (and the live answers send it); ``mode`` is the
    ``clock`` setting."""
    now = await clock.now()
    if mode == "manual":
        text = f"{now:g} s"
    elif mode == "real":
        text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    else:
        text = "each poll moves its task"
    return {"mode": mode, "now": now, "text": text}


def here(request: Request) -> str:
    """This page's address, where its forms come back to."""
    query = request.url.query
    return safe_next(request.url.path + (f"?{query}" if query else ""))


async def render(
    request: Request, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    emulator = emulator_of(request)
    shared = {
        "prefix": PREFIX,
        "csrf": csrf_token(request),
        "clock": await clock_state(emulator.settings.clock, emulator.clock),
        "token_required": token_required(request),
        "here": here(request),
        "nav": "",
        "live_url": "",
    }
    response = templates().TemplateResponse(
        request,
        name,
        shared | context,
        status_code=status,
        headers=security_headers(),
    )
    set_cookies(response, request)
    return response


async def login_page(
    request: Request, status: int = 401, problem: str = "", next_url: str | None = None
) -> Response:
    """The form that asks for the admin token; ``next_url``: where to go once signed in."""
    return await render(
        request,
        "login.html",
        {"title": "Sign in", "problem": problem, "next": next_url or here(request)},
        status=status,
    )


async def refused(request: Request, exc: EmulatorError, back: str = PREFIX) -> Response:
    """An ``EmulatorError`` as a page: the same status and message the control plane's JSON
    answer would carry, for a person."""
    return await render(
        request,
        "refused.html",
        {"title": "Refused", "error": exc, "back": back},
        status=exc.status_code,
    )


def page(*known: str) -> Callable[[Page], Page]:
    """A page: the login form (401) without the admin token; a refusal rendered as a page.
    Its query takes only the ``known`` parameters, each once: a misspelt or stale one is a
    400 naming it, not a page that quietly shows something else (``?order=olde``)."""

    def wrap(handler: Page) -> Page:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            if not signed_in(request):
                return await login_page(request)
            try:
                query_values(request.query_params.multi_items(), known)
                await emulator_of(request).start()
                return await handler(request)
            except EmulatorError as exc:
                return await refused(request, exc)

        return run

    return wrap


def action(handler: Action) -> Page:
    """A form that changes state: signed in, read at the door, from this dashboard only
    (``access.check_same_site``); then 303 back to the page it came from."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        if not signed_in(request):
            return await login_page(request)
        form: Form = {}
        try:
            form = await read_form(request)
            check_same_site(request, form)
            await emulator_of(request).start()
            return await handler(request, form)
        except EmulatorError as exc:
            return await refused(request, exc, safe_next(form.get("next")))

    return run


def back(form: Form) -> Response:
    return RedirectResponse(safe_next(form.get("next")), status_code=303)


def live(*known: str) -> Callable[[Live], Page]:
    """A small JSON answer a page polls; 401 (the control plane's JSON) without the token.
    Its query takes only the ``known`` parameters, as a page's."""

    def wrap(handler: Live) -> Page:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            if not signed_in(request):
                raise EmulatorError(
                    "the dashboard needs the admin token (setting admin_token): sign in at "
                    f"{PREFIX}/login",
                    status_code=401,
                    code="admin_token_required",
                )
            query_values(request.query_params.multi_items(), known)
            emulator = emulator_of(request)
            await emulator.start()
            body = await handler(request)
            body["clock"] = await clock_state(emulator.settings.clock, emulator.clock)
            return JSONResponse(body, headers={"Cache-Control": "no-store"})

        return run

    return wrap


__all__ = [
    "action",
    "back",
    "clock_state",
    "here",
    "live",
    "login_page",
    "page",
    "refused",
    "render",
    "security_headers",
    "templates",
]
