"""The hot routes served without Starlette's per-request layers: the real API's two, and the
result download that follows them in a test.

A poll, a submission and a download pass through Starlette's middleware stack
(ServerErrorMiddleware, ExceptionMiddleware), its router (every route tried in order) and
``request_response``, each with its own ``send`` wrapper and exception handling: measured in
process (callgrind), that is about 30 % of a poll's instructions and 13 % of a submission's,
all of it bookkeeping for cases these routes do not have. `Dispatch` sends
``POST /v1/images/tasks``, ``GET``/``HEAD /v1/images/tasks/{task_id}`` and
``GET``/``HEAD /_emulator/results/{task_id}/{token}/{name}`` straight to their handlers and
does by hand what those layers would do for them, the same way:

- the route matched by the route's own rules (its ``path_regex``, checked to be the one
  applied here by string methods; the path relative to ``root_path`` as Starlette's router
  computes it), and only for the methods the route accepts: anything else (a 405 with its
  Allow header, a redirect, a 404) is Starlette's;
- the scope keys Starlette sets on the way (``app``, ``router``, ``route``, ``endpoint``,
  ``path_params``), so handlers and whatever reads the scope after see the same;
- a refusal rendered by the app's own exception handler (``EmulatorError``, Starlette's
  ``HTTPException``); anything else answered with the app's 500 handler and re-raised, as
  ``ServerErrorMiddleware`` does (servers log it, in-process clients see it); an exception once
  the answer has started is re-raised (a handled one as the ``RuntimeError`` Starlette raises);
  ``DropConnection`` and cancellation pass through untouched.

It is used only while the app is exactly what it checks: no middleware (the opt-in access log
and CORS layers need Starlette's path), no debug, no body limit, the three routes first in the
router in ``api.routes()``'s order (so no other route can match first), and exception handlers
it can apply the same way. Otherwise every request goes through Starlette, as before.
``tests/test_dispatch.py`` sends the same generated requests to an app with and without it and
compares the answers, the journal and the scope, byte for byte.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from starlette.applications import Starlette

#: The three routes, as ``api.routes()`` declares them (and in this order, first in the app).
SUBMIT_PATH = "/v1/images/tasks"
POLL_PATH = "/v1/images/tasks/{task_id}"
POLL_PREFIX = "/v1/images/tasks/"
RESULT_PATH = "/_emulator/results/{task_id}/{token}/{name}"
RESULT_PREFIX = "/_emulator/results/"
#: The GET routes' regexes as Starlette compiles them: `match` applies them by string methods.
#: Anchored at the end by `privates.anchor_at_end` (``\\Z``, not Starlette's ``$``).
POLL_REGEX = r"^/v1/images/tasks/(?P<task_id>[^/]+)\Z"
RESULT_REGEX = r"^/_emulator/results/(?P<task_id>[^/]+)/(?P<token>[^/]+)/(?P<name>[^/]+)\Z"

#: An exception handler as the app installs them (`errors.exception_handlers`): async, and
#: always answers.
Renderer = Callable[[Request, Exception], Awaitable[Response]]


class Dispatch:
    """Serves the hot routes of one app; `match` says whether a request is theirs."""

    __slots__ = ("_app", "_error_handler", "_handlers", "_poll", "_result", "_submit")

    def __init__(
        self,
        app: Starlette,
        routes: tuple[Route, Route, Route],
        handlers: Mapping[Any, Renderer],
        error_handler: Renderer,
    ) -> None:
        self._app = app
        self._submit, self._poll, self._result = routes
        self._handlers = handlers
        self._error_handler = error_handler

    @classmethod
    def of(cls, app: Starlette) -> Dispatch | None:
        """The dispatch for ``app``, or None when Starlette must serve everything: any layer,
        setting or route this module does not reproduce."""
        router = app.router
        # getattr: body limits are newer than some Starlette 1.x this project allows.
        if app.user_middleware or app.debug or getattr(app, "max_body_size", None) is not None:
            return None
        if getattr(router, "middleware_stack", router.app) != router.app:  # its own middleware
            return None
        routes = router.routes
        if len(routes) < 3:
            return None
        submit, poll, result = routes[0], routes[1], routes[2]
        if not (
            isinstance(submit, Route)
            and isinstance(poll, Route)
            and isinstance(result, Route)
            and (submit.path, submit.methods) == (SUBMIT_PATH, {"POST"})
            and (poll.path, poll.methods) == (POLL_PATH, {"GET", "HEAD"})
            and (result.path, result.methods) == (RESULT_PATH, {"GET", "HEAD"})
            and poll.path_regex.pattern == POLL_REGEX
            and result.path_regex.pattern == RESULT_REGEX
            and all(inspect.iscoroutinefunction(r.endpoint) for r in (submit, poll, result))
        ):
            return None
        # As Starlette.build_middleware_stack splits them: 500 / Exception go to
        # ServerErrorMiddleware (the last one listed wins), the others to ExceptionMiddleware.
        error_handler = None
        handlers: dict[Any, Renderer] = {}
        for key, value in app.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value
        # Status-code handlers and Starlette's default renderers are not reproduced here.
        if (
            error_handler is None
            or HTTPException not in handlers
            or any(not isinstance(key, type) for key in handlers)
            or not all(inspect.iscoroutinefunction(h) for h in (error_handler, *handlers.values()))
        ):
            return None
        return cls(app, (submit, poll, result), handlers, error_handler)

    def match(self, scope: Scope) -> tuple[Route, dict[str, Any]] | None:
        """The route and path parameters of an HTTP request this dispatch serves, else None."""
        path: str = scope["path"]
        root_path = scope.get("root_path", "")
        # Starlette's get_route_path: the path below root_path when it starts with it.
        if root_path and path.startswith(root_path):
            if path == root_path:
                path = ""
            elif path[len(root_path)] == "/":
                path = path[len(root_path) :]
        method = scope["method"]
        if method == "POST":
            if path == SUBMIT_PATH:  # the route's regex, anchored at the end: the path itself
                return self._submit, dict(scope.get("path_params", ()))
        elif method == "GET" or method == "HEAD":
            if path.startswith(POLL_PREFIX):
                # The route's regex, ^/v1/images/tasks/(?P<task_id>[^/]+)\Z, by string methods:
                # "[^/]+" takes any character but "/" (a final "\n" too), so the id is the rest
                # of the path when that is not empty and holds no "/".
                task_id = path[len(POLL_PREFIX) :]
                if task_id and "/" not in task_id:
                    params = dict(scope.get("path_params", ()))
                    params["task_id"] = task_id
                    return self._poll, params
            elif path.startswith(RESULT_PREFIX):
                # RESULT_REGEX the same way: exactly three non-empty segments after the prefix.
                parts = path[len(RESULT_PREFIX) :].split("/")
                if len(parts) == 3 and all(parts):
                    params = dict(scope.get("path_params", ()))
                    params["task_id"], params["token"], params["name"] = parts
                    return self._result, params
        return None

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        path_params: dict[str, Any],
    ) -> None:
        # The keys Starlette's layers set, in their order (ExceptionMiddleware's
        # "starlette.exception_handlers" is read only by those layers themselves).
        scope["app"] = self._app
        if "router" not in scope:
            scope["router"] = self._app.router
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = path_params
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            await self._refuse(scope, receive, send, request, exc)
            return
        try:
            await response(scope, receive, send)
        except Exception as exc:
            self._failed_after_start(exc)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, request: Request, exc: Exception
    ) -> None:
        """Before any answer: the handler Starlette would pick, or the 500 and a re-raise."""
        handler = self._handler_for(exc)
        if handler is None:
            response = await self._error_handler(Request(scope), exc)
            await response(scope, receive, send)
            raise exc
        answer = await handler(request, exc)
        try:
            await answer(scope, receive, send)
        except Exception as failed:
            self._failed_after_start(failed)
        exc.__traceback__ = None  # as Starlette: a reused exception gathers no tracebacks

    def _failed_after_start(self, exc: Exception) -> None:
        """An exception once the answer has started (a Response sends its start first)."""
        if self._handler_for(exc) is not None:
            raise RuntimeError("Caught handled exception, but response already started.") from exc
        raise exc

    def _handler_for(self, exc: Exception) -> Renderer | None:
        handlers = self._handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None


__all__ = ["Dispatch"]
