"""The fixture's httpx clients: `Client` and `AsyncClient`, httpx's own with a cookie store that
skips answers setting no cookie and a memory of the URLs they made of paths; and the pieces
every client shares, made once (the TLS context, the parsed base URL, the key's header).

Module-level memos, each a pure function of its key (an immutable result: nothing of any
emulator is kept), so two emulators in one process share nothing observable.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, cast

import httpx


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The TLS context httpx would build for each client, built once: loading the CA bundle
    takes tens of milliseconds, paid per client (two per live test) otherwise."""
    return httpx.create_ssl_context()


@functools.lru_cache(maxsize=16)
def parsed(base_url: str) -> httpx.URL:
    """``base_url`` parsed once (an `httpx.URL` is immutable): parsing it was half the cost
    of making a client (~20 of ~38 µs), paid by most tests."""
    return httpx.URL(base_url)


#: httpx.QueryParams are immutable: one empty one serves every client.
NO_PARAMS = httpx.QueryParams()


@functools.lru_cache(maxsize=16)
def auth_headers(api_key: str) -> httpx.Headers:
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

    Module-level, like `parsed`: a pure function of its key (httpx's own merging and parsing,
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


class _CookieStore:
    """The fixture's clients' ``cookies``: httpx's property, holding a `_Cookies` (httpx's
    clients read their store only through this property when they send and receive)."""

    _fixture_cookies: _Cookies

    def __init__(self, **kwargs: Any) -> None:
        cookies = kwargs.pop("cookies", None)
        super().__init__(**kwargs)  # httpx's client, next in the subclasses' order
        self.cookies = cookies  # as httpx takes them: a jar kept, anything else copied

    @property
    def cookies(self) -> httpx.Cookies:
        return self._fixture_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:  # what httpx.Cookies takes
        self._fixture_cookies = _Cookies(cookies)


class _RememberedUrls:
    """The fixture's clients' `build_request`, remembering the URLs it made (`_MergedUrls`)."""

    #: The handle's base URL as given and the client's base URL object made from it, while the
    #: client's base is the handle's (None: made with a base URL of the user's).
    _merge_base: tuple[str, httpx.URL] | None = None
    base_url: httpx.URL  # httpx's property (declared for the type checker)
    params: httpx.QueryParams

    def _remember_urls(self, base: str) -> None:
        """URL strings are remembered merged with ``base``, the string this client's base URL
        was made from, as long as that base URL object stays the client's."""
        self._merge_base = (base, self.base_url)

    def build_request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request:
        """httpx's `build_request`, given the URL httpx made of the same string before: httpx
        merges an `httpx.URL` that is absolute with nothing, so the request is the same."""
        build = cast(Any, super()).build_request  # httpx's client, next in the order
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


class Client(_RememberedUrls, _CookieStore, httpx.Client):
    """An `httpx.Client` whose cookie store skips answers that set no cookie (`_Cookies`) and
    which remembers the URLs it made of paths (`_MergedUrls`)."""


class AsyncClient(_RememberedUrls, _CookieStore, httpx.AsyncClient):
    """An `httpx.AsyncClient` like `Client`."""
