"""The recorder's HTTP client to the real service: every exchange bounded.

- only the two task routes are forwarded (the proxy's routes), and result pictures fetched;
- a connect timeout and a total deadline per exchange (connect, head and body: a trickling
  answer cannot hold one longer); answers read up to a size limit;
- redirects are never followed on the task routes (the 3xx goes back to the client as it
  came); a result download follows at most `MAX_REDIRECTS` redirects on the same host, never to
  another one;
- the caller's key goes only to the upstream's task routes, never to a result URL;
- the upstream URL may not carry credentials, a query or a fragment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

#: Request headers a client's request keeps on its way to the upstream.
FORWARDED_REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "accept-language",
    "user-agent",
    "idempotency-key",
    "x-request-id",
)
#: Answer headers that are not the answer's own (hop by hop) or that the proxy rewrites (the
#: body is handed on decoded, with its own length).
NOT_HANDED_ON = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
    }
)
MAX_REDIRECTS = 3


class UpstreamError(Exception):
    """No usable answer: unreachable, timed out, too large, or a redirect not followed;
    ``status`` is the upstream's status when it got that far (a body too large or too slow)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: Wall seconds from sending the request to the end of the answer.
    latency: float
    #: The headers handed on, as the upstream sent their bytes (a value need not be Latin-1).
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return ""


def check_upstream(url: str) -> str:
    """``url`` without a trailing slash, or ValueError naming what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"--upstream {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--upstream must be an http(s) URL with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("--upstream must not carry credentials: the key comes from each request")
    if parts.query or parts.fragment:
        raise ValueError("--upstream must not have a query or a fragment")
    del port  # parsed only to refuse a bad one
    return url.rstrip("/")


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class Upstream:
    """One recorder's client of the upstream service."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_answer_bytes: int = 1024 * 1024,
        max_result_bytes: int = 64 * 1024 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = check_upstream(base_url)
        self.max_answer_bytes, self.max_result_bytes = max_answer_bytes, max_result_bytes
        self.timeout = timeout
        self.http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
            follow_redirects=False,
            trust_env=False,  # no proxy or .netrc credentials from the environment
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def forward(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        """Send a client's request to the upstream's task route ``path``."""
        url = self.base_url + path + (f"?{query}" if query else "")
        kept = {k: v for k, v in headers.items() if k in FORWARDED_REQUEST_HEADERS}
        return await self._exchange(method, url, kept, body, self.max_answer_bytes)

    async def fetch_result(self, url: str) -> Reply:
        """GET a result picture without the key, following same-host redirects only, all of
        them within one ``timeout`` (each redirect's exchange gets what is left of it)."""
        if not url.startswith(("http://", "https://")):
            raise UpstreamError(f"not an http(s) URL: {url[:80]!r}")
        started = time.perf_counter()
        for _ in range(MAX_REDIRECTS + 1):
            left = self.timeout - (time.perf_counter() - started)
            if left <= 0:
                raise UpstreamError(self._too_slow())
            reply = await self._exchange("GET", url, {}, b"", self.max_result_bytes, left)
            location = reply.header("location")
            if not (300 <= reply.status < 400 and location):
                return replace(reply, latency=time.perf_counter() - started)
            target = urljoin(url, location)
            if origin(target) != origin(url):
                raise UpstreamError(
                    f"the result URL redirected to another host ({origin(target)[1]}): not followed"
                )
            url = target
        raise UpstreamError(f"the result URL redirected more than {MAX_REDIRECTS} times")

    def _too_slow(self) -> str:
        return f"the exchange took longer than the --upstream-timeout of {self.timeout:g} s"

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        limit: int,
        budget: float | None = None,
    ) -> Reply:
        started = time.perf_counter()
        status: int | None = None
        try:
            # httpx's timeouts bound each read: a service trickling a byte a second never trips
            # them. This bounds the whole exchange (connect, head and body).
            with anyio.fail_after(self.timeout if budget is None else budget):
                request = self.http.build_request(
                    method, url, headers=headers, content=body or None
                )
                response = await self.http.send(request, stream=True)
                status = response.status_code
                try:
                    data = bytearray()
                    async for chunk in response.aiter_bytes():
                        data += chunk
                        if len(data) > limit:
                            raise UpstreamError(f"the answer is larger than {limit} bytes", status)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise UpstreamError(self._too_slow(), status) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise UpstreamError(said, status) from None
        headers_out = [
            (k, v) for k, v in response.headers.multi_items() if k.lower() not in NOT_HANDED_ON
        ]
        raw = [
            (k.lower(), v)
            for k, v in response.headers.raw
            if k.decode("latin-1").lower() not in NOT_HANDED_ON
        ]
        latency = time.perf_counter() - started
        return Reply(response.status_code, headers_out, bytes(data), latency, raw)


__all__ = ["Reply", "Upstream", "UpstreamError", "check_upstream", "origin"]
