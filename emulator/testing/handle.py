"""`ImageEmulator`: a test's handle on one emulator (what the pytest fixtures yield).

Steering calls the control plane's operations (emulator/usecases/steer.py) directly, never
through HTTP, on the one
loop its store belongs to (emulator/testing/app_loop.py): the same calls, unchanged, in sync tests,
pytest-asyncio and anyio tests, and from threads of the code under test.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ..core.journal import query_from_filters
from ..stores.memory import MemoryStore
from ..usecases.steer import Steering, settings_json
from .app_loop import Runner
from .transport import ASGITransport, AsyncASGITransport

if TYPE_CHECKING:
    from ..usecases.emulator import Emulator
    from .intercept import Interception

T = TypeVar("T")
API_KEY = "sk-emulator-test"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The TLS context httpx would build for each client, built once: loading the CA bundle
    takes tens of milliseconds, paid per client (two per live test) otherwise."""
    return httpx.create_ssl_context()


@functools.lru_cache(maxsize=16)
def _parsed(base_url: str) -> httpx.URL:
    """``base_url`` parsed once (an `httpx.URL` is immutable): parsing it was half the cost
    of making a client (~20 of ~38 µs), paid by most tests."""
    return httpx.URL(base_url)


#: httpx.QueryParams are immutable: one empty one serves every client.
_NO_PARAMS = httpx.QueryParams()
_UNSET: Any = object()


@functools.lru_cache(maxsize=16)
def _auth_headers(api_key: str) -> httpx.Headers:
    """The clients' own header as `httpx.Headers`, made once: httpx copies the headers a
    client is given (a `Headers` by its list, a dict checked and encoded item by item, ~9k
    instructions of a client's ~133k), and nothing changes this one."""
    return httpx.Headers({"Authorization": f"Bearer {api_key}"})


class _Cookies(httpx.Cookies):
    """httpx's cookie store, skipping an answer that sets no cookie. httpx hands every answer
    to ``Cookies.extract_cookies``, which wraps the request as a ``urllib.request.Request`` and
    the answer for ``http.cookiejar`` (whose jar builds its headers as an
    ``email.message.Message``, twice) before the jar finds nothing to keep: ~22 µs an answer,
    three in a life-cycle test. An answer with Set-Cookie or Set-Cookie2 goes the standard way."""

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers  # names compared case-insensitively
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class _MergedUrls:
    """What httpx made of a URL string sent by a client with a given base URL (the request's
    URL), by (base URL, string), at most ``size`` of them (all forgotten when full).

    Module-level, like `_parsed`: a pure function of its key (httpx's own merging and parsing,
    which an `httpx.URL` is the immutable result of), holding nothing of any emulator. Parsing
    a path and merging it with the base was ~270k of a relative request's ~400k instructions
    in `build_request` (callgrind), and tests send the same few paths again and again (task ids
    follow from the seed, which the fixture sets)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[tuple[str, str], httpx.URL] = {}

    def get(self, key: tuple[str, str]) -> httpx.URL | None:
        return self._items.get(key)

    def put(self, key: tuple[str, str], url: httpx.URL) -> None:
        if len(self._items) >= self._size:
            self._items.clear()
        self._items[key] = url


_MERGED = _MergedUrls(1024)


class _QuietCookies:
    """What the fixture's clients add to httpx's: ``cookies``, httpx's property, holding a
    `_Cookies` (httpx's clients read their store only through this property when they send and
    receive); and `build_request` remembering the URLs it made (`_MergedUrls`)."""

    _fixture_cookies: _Cookies
    #: The handle's base URL as given and the client's base URL object made from it, while the
    #: client's base is the handle's (None: made with a base URL of the user's).
    _merge_base: tuple[str, httpx.URL] | None = None

    def __init__(self, **kwargs: Any) -> None:
        cookies = kwargs.pop("cookies", None)
        super().__init__(**kwargs)  # httpx's client, next in the subclasses' order
        self.cookies = cookies  # as httpx takes them: a jar kept, anything else copied

    base_url: httpx.URL  # httpx's property (declared for the type checker)
    params: httpx.QueryParams

    def _remember_urls(self, base: str) -> None:
        """URL strings are remembered merged with ``base``, the string this client's base URL
        was made from, as long as that base URL object stays the client's."""
        self._merge_base = (base, self.base_url)

    def build_request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request:
        """httpx's `build_request`, given the URL httpx made of the same string before: httpx
        merges an `httpx.URL` that is absolute with nothing, so the request is the same."""
        build = super().build_request  # type: ignore[misc]
        base = self._merge_base
        # Paths only: an absolute URL is parsed once by httpx anyway, and a result's carries a
        # token of its task (a new string in every test).
        if base is None or type(url) is not str or url[:1] != "/" or self.base_url is not base[1]:
            built: httpx.Request = build(method, url, **kwargs)
            return built
        key = (base[0], url)
        merged = _MERGED.get(key)
        if merged is not None:
            built = build(method, merged, **kwargs)
            return built
        built = build(method, url, **kwargs)
        # Without query parameters to add, the request's URL is the string merged with the
        # base (and parsed), nothing else.
        if kwargs.get("params") is None and not self.params and built.url.is_absolute_url:
            _MERGED.put(key, built.url)
        return built

    @property
    def cookies(self) -> httpx.Cookies:
        return self._fixture_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:  # what httpx.Cookies takes
        self._fixture_cookies = _Cookies(cookies)


class _Client(_QuietCookies, httpx.Client):
    """An `httpx.Client` whose cookie store skips answers that set no cookie (`_Cookies`)."""


class _AsyncClient(_QuietCookies, httpx.AsyncClient):
    """An `httpx.AsyncClient` whose cookie store skips answers that set no cookie."""


@dataclass
class FaultHandle:
    """A fault rule added by a test; ``hits`` asks the emulator how often it fired."""

    id: str
    _emulator: ImageEmulator

    @property
    def hits(self) -> int:
        return self._emulator._run(self._emulator.steering.fault_hits(self.id))

    def remove(self) -> None:
        self._emulator._run(self._emulator.steering.remove_fault(self.id))


class Faults:
    """``image_emulator.faults``: the control plane's fault vocabulary from Python."""

    def __init__(self, emulator: ImageEmulator) -> None:
        self._emulator = emulator

    def add(
        self,
        effect: str | dict[str, Any],
        *,
        probability: float = 1.0,
        times: int | None = None,
        id: str | None = None,
        **match: Any,
    ) -> FaultHandle:
        """Add a rule: ``faults.add("drop", endpoint="poll", times=1)`` or
        ``faults.add({"kind": "http_error", "status": 429, "retry_after": 3})``."""
        rule: dict[str, Any] = {"effect": effect, "match": match, "probability": probability}
        if times is not None:
            rule["times"] = times
        if id is not None:
            rule["id"] = id
        added = self._emulator._run(self._emulator.steering.add_fault(rule))
        return FaultHandle(added, self._emulator)

    def clear(self) -> None:
        self._emulator._run(self._emulator.steering.clear_faults())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._emulator._run(self._emulator.steering.faults()))


class ImageEmulator:
    """A handle on one emulator: where it is, and how to steer it.

    ``in_process``: clients reach the app through the in-process transports (the
    ``image_emulator`` fixture); otherwise through the network at ``base_url`` (the live one).
    """

    def __init__(self, app: Any, loop: Runner, base_url: str, *, in_process: bool) -> None:
        self.app = app
        self.emulator: Emulator = app.state.emulator
        #: The control plane's operations on it (what every steering call below runs).
        self.steering: Steering = self.emulator.steering
        self.base_url = base_url
        self.api_key = API_KEY
        self.faults = Faults(self)
        self._loop = loop
        #: Steering an in-memory store never suspends: it runs without a trip on the loop
        #: when the loop would run in place (`AppLoop.run_inline`).
        self._inline = type(self.emulator.store) is MemoryStore
        self._in_process = in_process
        self._transport = ASGITransport(app, loop)
        self._async_transport = AsyncASGITransport(app, loop)
        self._interceptions: list[Interception] = []
        self._control: httpx.Client | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._inline:
            return self._loop.run_inline(coro)
        return self._loop.run(coro)

    # -- clients and transports ------------------------------------------------------------
    @property
    def transport(self) -> httpx.BaseTransport:
        """The in-process sync transport, for clients of your own:
        ``httpx.Client(base_url=image_emulator.base_url, transport=image_emulator.transport)``.
        Closing such a client leaves the emulator running."""
        return self._transport

    @property
    def async_transport(self) -> httpx.AsyncBaseTransport:
        """The in-process async transport, for ``httpx.AsyncClient(transport=...)``."""
        return self._async_transport

    def _client_options(self, auth: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        given = kwargs.pop("headers", _UNSET)
        headers: Any
        if auth and given is _UNSET:
            headers = _auth_headers(self.api_key)
        else:
            headers = {"Authorization": f"Bearer {self.api_key}"} if auth else {}
            headers.update({} if given is _UNSET else given)
        if not self._in_process:
            kwargs.setdefault("verify", _ssl_context())
        # The same empty query as the default, which httpx makes with urllib's parse_qs(None)
        # (~20k instructions; the client took ~122k): an empty QueryParams is copied instead.
        kwargs.setdefault("params", _NO_PARAMS)
        return {"base_url": _parsed(self.base_url), "headers": headers, **kwargs}

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync httpx client pointed at the emulator, with the test API key."""
        transport = self._transport if self._in_process else None
        ours = "base_url" not in kwargs
        client = _Client(transport=transport, **self._client_options(True, kwargs))
        if ours:
            client._remember_urls(self.base_url)
        return client

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An async httpx client pointed at the emulator, with the test API key."""
        transport = self._async_transport if self._in_process else None
        ours = "base_url" not in kwargs
        client = _AsyncClient(transport=transport, **self._client_options(True, kwargs))
        if ours:
            client._remember_urls(self.base_url)
        return client

    def intercept(self, *origins: str) -> Interception:
        """Route every httpx request for these origins (``"https://relay.example"``), from any
        client on httpx's default transports, to this emulator; other hosts go where they
        went. Undone at the end of the test, or earlier by ``.stop()`` or a ``with`` block."""
        from .intercept import Interception  # here: most tests never intercept

        interception = Interception(origins, self._transport, self._async_transport)
        self._interceptions.append(interception)
        return interception

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request to the HTTP control plane (``/_emulator/...``): its JSON, or
        AssertionError on an error status. The steering calls below need none of it."""
        if self._control is None:
            transport = self._transport if self._in_process else None
            self._control = _Client(transport=transport, **self._client_options(False, {}))
        response = self._control.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    # -- steering ----------------------------------------------------------------------------
    def respond(
        self,
        status: int,
        json: Any = None,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        probability: float = 1.0,
        times: int | None = None,
        id: str | None = None,
        **match: Any,
    ) -> FaultHandle:
        """Answer matching requests with ``status``, a JSON value or a text ``body`` and
        ``headers`` (a fault rule of kind ``respond``, matched like any: ``endpoint``,
        ``model``, ``api_key``, ...); the rule's handle."""
        effect = {"kind": "respond", "status": status, "json": json, "body": body}
        effect["headers"] = None if headers is None else dict(headers)
        given = {name: value for name, value in effect.items() if value is not None}
        return self.faults.add(given, probability=probability, times=times, id=id, **match)

    def advance(self, seconds: float) -> float:
        """Move the manual clock forward; returns the new virtual time."""
        return self._run(self.steering.advance(seconds))

    def finish(self, task_id: str) -> dict[str, Any]:
        """End a task now, succeeded."""
        return self._run(self.steering.end_task(task_id, "succeeded", self.base_url))

    def fail(
        self, task_id: str, code: str = "upstream_error", message: str | None = None
    ) -> dict[str, Any]:
        """End a task now, failed with ``code``."""
        return self._run(self.steering.end_task(task_id, "failed", self.base_url, code, message))

    def run_until_settled(self, max_steps: int = 1000) -> list[dict[str, Any]]:
        """Advance the clock until every task has ended; the tasks' final views."""
        return self._run(self.steering.run_until_settled(self.base_url, max_steps))

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every task, with its schedule and current status."""
        return self._run(self.steering.tasks(self.base_url))

    def requests(
        self, *, body: Mapping[str, Any] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """The journal, newest last: entries matching every filter (``path``, ``method``,
        ``task_id``, ``endpoint``, ``status``, ``fault``) and every ``body`` field.

        Any other filter is a ValueError naming the known ones: body fields are filtered
        explicitly, ``body={"model": "X"}``, never by a bare ``model="X"``.
        """
        query = query_from_filters(filters, body)  # before the store: a bad filter never reads
        return self._run(self.steering.journal(query))

    def assert_requested(
        self, times: int | None = None, *, body: Mapping[str, Any] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """Assert the client sent matching requests (``times`` exactly, or at least one)."""
        entries = self.requests(body=body, **filters)
        described = filters | ({"body": body} if body is not None else {})
        if times is None and not entries:
            raise AssertionError(f"no request matched {described}")
        if times is not None and len(entries) != times:
            raise AssertionError(f"{len(entries)} requests matched {described}, expected {times}")
        return entries

    def sent(
        self, *, body: Mapping[str, Any] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """The body fields of the submissions the client sent (newest last)."""
        filters.setdefault("endpoint", "submit")
        return [e["body"]["fields"] for e in self.requests(body=body, **filters) if e.get("body")]

    @property
    def usage(self) -> dict[str, Any]:
        """The usage log: entries (held/settled/released) and totals per key and model."""
        return self._run(self.steering.billing.usage({}))

    def set_balance(self, amount: int | None, key: str | None = None) -> None:
        """Give ``key`` (default: the fixture's) a balance in credits; None: unlimited."""
        self._run(self.steering.set_balance(key or self.api_key, amount))

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings that may change while serving; the settings now in force."""
        remedy = "give it to @pytest.mark.image_emulator({name}=...) instead"
        return settings_json(self._run(self.steering.configure(settings, remedy)))

    def reset(self) -> None:
        """Forget tasks, journal, added faults, balances and usage; the clock back to 0.
        Settings stay as they are."""
        self._run(self.steering.reset())

    def restore(self, settings: Any) -> None:
        """Put ``settings`` (a `Settings`) in force and reset: a fresh start."""
        self._run(self.steering.restore(settings))
        self.reset()

    def close(self) -> None:
        """Stop intercepting and close clients made here; the fixture closes the loop."""
        for interception in reversed(self._interceptions):
            interception.stop()
        self._interceptions.clear()
        if self._control is not None:
            self._control.close()
