"""Routes built when a request first reaches them, matched exactly as if listed in their place.

Building a route compiles its path's regular expression, and the routes' modules are imported
to build them: the dashboard's 20 routes (and Starlette's static files module) were 1.5 % of
the pytest fixture's first setup (callgrind, docs/profile.md), for pages a test almost never
asks for. `Deferred` stands in the app's route list where those routes would be; Starlette's
router asks it as it would ask each of them, and it answers as the first of them that matches
would:

- a full match: the first route that matches fully (the router handles it at once, as it
  would have);
- else a partial match (the method not allowed): the first route that matches partially (the
  router keeps it only if no route before had one, and hands over to it if no route after
  matches fully, as it would have);
- else no match (the router goes on; its trailing-slash redirect asks again, as it would).

The route handles the request as itself, and the scope is what it would have been
(``scope["route"]`` that route). Its routes are built once per `Deferred`, at its first
question, never at start-up; the answers stay the same (tests/test_deferred.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

#: The route that matched, from `Deferred.matches` to `Deferred.handle` through the child
#: scope the router applies between them (taken out again before the route sees the scope).
_MATCHED = "emulator.deferred.route"


class Deferred(BaseRoute):
    """The routes ``build()`` returns, built at the first request that reaches them."""

    def __init__(self, build: Callable[[], list[BaseRoute]]) -> None:
        self._build = build
        self._routes: list[BaseRoute] | None = None

    @property
    def routes(self) -> list[BaseRoute]:
        """The routes, built now if they were not yet (concurrent first builds are harmless:
        the routes hold no state, and one list is kept)."""
        routes = self._routes
        if routes is None:
            routes = self._routes = list(self._build())
        return routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Match, Scope] | None = None
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, {**child_scope, _MATCHED: route}
            if match is Match.PARTIAL and partial is None:
                partial = match, {**child_scope, _MATCHED: route}
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: BaseRoute = scope.pop(_MATCHED)
        scope["route"] = route  # as the router sets it for the route it hands over to
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)

    def __repr__(self) -> str:
        built = "not built" if self._routes is None else f"{len(self._routes)} routes"
        return f"{type(self).__name__}({built})"


__all__ = ["Deferred"]
