"""Send httpx's own requests for some origins to an emulator, other hosts untouched.

Code under test often makes its own ``httpx.Client`` from a configured base URL. Rather than
changing that code, ``image_emulator.intercept("https://relay.example")`` routes every request
for that origin, from any client using httpx's default transports, to the emulator's
in-process transports. Like pytest-httpx, it wraps the public transport methods
``httpx.HTTPTransport.handle_request`` and ``httpx.AsyncHTTPTransport.handle_async_request``
(so proxies, retries and subclasses keep working); a client given a transport of its own
(``MockTransport``, ``ASGITransport``) is never touched.

The wrapper lives on the httpx class while any origin is routed, holding the routes of every
emulator that intercepts (one class, one wrapper); the last `Interception` to stop puts the
original method back. A client with the emulator's transport needs none of this: prefer
``httpx.Client(transport=image_emulator.transport)`` where the code under test takes one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import httpx

#: The attribute marking httpx's transport method as wrapped, and holding its router.
_MARK = "__image_emulator_router__"
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin_of(url: str | httpx.URL, where: str = "origin") -> Origin:
    """``https://relay.example`` as (scheme, host, port); ValueError naming the rule."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"{where} must be a URL like https://relay.example: {exc}") from None
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.host:
        raise ValueError(
            f"{where} must be an http or https URL with a host, like https://relay.example; "
            f"got {str(url)!r:.80}"
        )
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.userinfo:
        raise ValueError(
            f"{where} must be an origin (scheme, host, port) without path, query or user; "
            f"got {str(url)!r:.80}: the emulator serves the real API's paths from the root"
        )
    return _key(parsed)


def _key(url: httpx.URL) -> Origin:
    return url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme, 0)


class _Router:
    """The routes of one wrapped method: origin -> the transport that answers for it."""

    def __init__(self, cls: type, name: str, original: Callable[..., Any]) -> None:
        self.cls, self.name, self.original = cls, name, original
        self.routes: dict[Origin, Any] = {}

    def target(self, request: httpx.Request) -> Any:
        return self.routes.get(_key(request.url)) if self.routes else None


def _router(cls: type, name: str) -> _Router:
    """The router wrapped around ``cls.name``, installing the wrapper if it is not there."""
    current = getattr(cls, name)
    router: _Router | None = getattr(current, _MARK, None)
    if router is not None:
        return router
    router = _Router(cls, name, current)
    wrapper: Callable[..., Any]
    if name == "handle_request":

        @functools.wraps(current)
        def wrapper(self: Any, request: httpx.Request) -> httpx.Response:
            target = router.target(request)
            if target is None:
                return router.original(self, request)  # type: ignore[no-any-return]
            return target.handle_request(request)  # type: ignore[no-any-return]

    else:

        @functools.wraps(current)
        async def wrapper(self: Any, request: httpx.Request) -> httpx.Response:
            target = router.target(request)
            if target is None:
                return await router.original(self, request)  # type: ignore[no-any-return]
            return await target.handle_async_request(request)  # type: ignore[no-any-return]

    setattr(wrapper, _MARK, router)
    setattr(cls, name, wrapper)
    return router


def _release(router: _Router) -> None:
    """Put the original method back once no origin is routed (if nobody wrapped it since)."""
    if not router.routes and getattr(getattr(router.cls, router.name), _MARK, None) is router:
        setattr(router.cls, router.name, router.original)


class Interception:
    """Origins routed to one emulator until `stop` (or the end of the test, or the ``with``)."""

    def __init__(
        self,
        origins: Iterable[str],
        transport: httpx.BaseTransport,
        async_transport: httpx.AsyncBaseTransport,
    ) -> None:
        self.origins = [origin_of(origin) for origin in origins]
        if not self.origins:
            raise ValueError("intercept needs at least one origin, like https://relay.example")
        self._targets = {"handle_request": transport, "handle_async_request": async_transport}
        self._routers: list[_Router] = []
        classes: dict[str, type] = {
            "handle_request": httpx.HTTPTransport,
            "handle_async_request": httpx.AsyncHTTPTransport,
        }
        for name, target in self._targets.items():
            router = _router(classes[name], name)
            taken = [o for o in self.origins if o in router.routes]
            if taken:
                self._routers.append(router)
                self.stop()
                scheme, host, port = taken[0]
                raise ValueError(f"{scheme}://{host}:{port} is already routed to an emulator")
            for origin in self.origins:
                router.routes[origin] = target
            self._routers.append(router)

    @property
    def active(self) -> bool:
        return bool(self._routers)

    def stop(self) -> None:
        """Let requests for these origins go where they were going again; idempotent."""
        routers, self._routers = self._routers, []
        for router, target in zip(routers, self._targets.values(), strict=False):
            for origin in self.origins:
                if router.routes.get(origin) is target:
                    del router.routes[origin]
            _release(router)

    def __enter__(self) -> Interception:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
