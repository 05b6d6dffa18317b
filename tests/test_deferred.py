"""Routes built at their first request (emulator/http/deferred.py): the dashboard's routes are
built only when a request reaches them, and an app answers exactly as with them listed in
place: the same generated requests to both give the same answers, exceptions and scopes."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import NoMatchFound

from emulator import Settings, create_app
from emulator.http.app import EmulatorApp
from emulator.http.deferred import Deferred

from .dispatch_pair import Outcome, Sent, send_to

ADMIN = "admin-token-1"


def _flattened(app: EmulatorApp) -> EmulatorApp:
    """``app`` with each `Deferred` replaced by its routes, listed in its place."""
    routes = app.router.routes
    for index in reversed(range(len(routes))):
        route = routes[index]
        if isinstance(route, Deferred):
            routes[index : index + 1] = route.routes
    return app


#: The dashboard's cookies: random per answer (CSRF) or per emulator (the session's HMAC).
_COOKIE = re.compile(rb"(?:emulator_ui_csrf|emulator_ui_session)=([^;]+)")


def _tokenless(outcome: Outcome) -> tuple[list[bytes], bytes]:
    """The messages and the scope with the dashboard's random cookie values replaced."""
    tokens = [
        token
        for message in outcome.messages
        for _, value in message.get("headers", ())
        for token in _COOKIE.findall(value)
        if token
    ]

    def marked(value: Any) -> bytes:
        text = repr(value).encode()
        for token in tokens:
            text = text.replace(token, b"<token>")
        return text

    return [marked(message) for message in outcome.messages], marked(outcome.scope)


class Twins:
    """Two emulators built alike, the second with the deferred routes listed in place."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.deferred = create_app(settings)
        self.listed = _flattened(create_app(settings))
        for app in (self.deferred, self.listed):
            self.loop.run_until_complete(app.state.emulator.start())

    def send(self, sent: Sent) -> None:
        deferred, listed = (
            self.loop.run_until_complete(send_to(app, sent)) for app in (self.deferred, self.listed)
        )
        assert _tokenless(deferred) == _tokenless(listed), sent
        assert deferred.raised == listed.raised, sent
        assert deferred.keys == listed.keys, sent

    def close(self) -> None:
        for app in (self.deferred, self.listed):
            self.loop.run_until_complete(app.state.emulator.store.close())
        self.loop.close()


@pytest.fixture(params=[None, ADMIN], ids=["open", "admin-token"])
def twins(request: pytest.FixtureRequest) -> Iterator[Twins]:
    made = Twins(Settings(seed=7, clock="manual", admin_token=request.param))
    yield made
    made.close()


UI = "/_emulator/ui"
#: Paths at, inside and beside the dashboard's, with and without a final slash (the router's
#: redirect asks every route again), some taken by routes listed before it.
PATHS = [
    UI,
    UI + "/",
    UI + "/tasks",
    UI + "/tasks/nope",
    UI + "/tasks/nope/",
    UI + "/tasks/nope/outcome",
    UI + "/tasks/nope/pictures/0",
    UI + "/tasks/nope/pictures/x",
    UI + "/faults",
    UI + "/faults/add",
    UI + "/login",
    UI + "/login/",
    UI + "/logout",
    UI + "/live/clock",
    UI + "/live/tasks/nope",
    UI + "/settings/",
    UI + "/static/dashboard.css",
    UI + "/static/",
    UI + "/static",
    UI + "/static/nope.js",
    UI + "x",
    UI + "\n",
    "/_emulator",
    "/_emulator/",
    "/_emulator/health",
    "/_emulator/health/",
    "/_emulator/tasks/",
    "/healthz",
    "/nowhere",
    "/nowhere/",
    "/",
]
METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]


@st.composite
def requests(draw: st.DrawFn) -> Sent:
    path = draw(st.sampled_from(PATHS))
    root_path = draw(st.sampled_from(["", "", "/base"]))
    headers = [(b"host", b"emulator.test")]
    if draw(st.booleans()):
        headers.append((b"authorization", f"Bearer {ADMIN}".encode()))
    if draw(st.booleans()):
        headers.append((b"cookie", f"emulator_admin={ADMIN}".encode()))
    return Sent(
        method=draw(st.sampled_from(METHODS)),
        path=root_path + path if draw(st.booleans()) else path,
        root_path=root_path,
        headers=headers,
        query=draw(st.sampled_from([b"", b"q=1"])),
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sent=requests())
def test_deferred_routes_answer_as_the_routes_listed_in_place(twins: Twins, sent: Sent) -> None:
    twins.send(sent)


def test_every_dashboard_path_is_tried_with_every_method(twins: Twins) -> None:
    for path in PATHS:
        for method in METHODS:
            twins.send(Sent(method=method, path=path, headers=[(b"host", b"emulator.test")]))


def test_an_app_serves_the_real_api_without_building_the_dashboard() -> None:
    # In a fresh process: this one's earlier tests may have built them.
    script = """
import asyncio, sys
from starlette.routing import NoMatchFound

from emulator import Settings, create_app
from emulator.http.deferred import Deferred
from tests.dispatch_pair import Sent, send_to

app = create_app(Settings(seed=1, clock="manual", api_keys=("k",)))
asyncio.run(app.state.emulator.start())
auth = [(b"authorization", b"Bearer k"), (b"content-type", b"application/json")]
body = b'{"model": "NanoBanana2-0.5K", "prompt": "x"}'
for sent in (Sent("POST", "/v1/images/tasks", headers=auth, body=body),
             Sent("GET", "/v1/images/tasks/none", headers=auth),
             Sent("GET", "/_emulator/health")):
    asyncio.run(send_to(app, sent))
deferred = [route for route in app.routes if isinstance(route, Deferred)]
print(len(deferred), repr(deferred[0]), "starlette.staticfiles" in sys.modules,
      "emulator.http.ui.pages" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["1", "Deferred(not", "built)", "False", "False"]


def test_a_deferred_route_names_its_routes_as_they_would_be_named() -> None:
    deferred = create_app(Settings())
    listed = _flattened(create_app(Settings()))
    for app in (deferred, listed):
        assert app.url_path_for("ui-static", path="dashboard.css") == UI + "/static/dashboard.css"
    with pytest.raises(NoMatchFound):
        deferred.url_path_for("nowhere")
