"""The service ``parity`` compares with: one bounded exchange at a time.

httpx's timeout bounds each read, not an exchange: a service sending a byte every few seconds
would hold parity forever. Each exchange here has a deadline for all of it (connect, head and
body: conform's `Deadline`, whose timer shuts the socket down) on a connection of its own (the
deadline learns a socket only as a connection opens: on a reused one it could cut nothing), and
reads at most `MAX_ANSWER_BYTES` of the answer, so a huge answer costs that much memory, not its
size.
Either bound reached is `NoAnswer` (the caller reports it as a difference), never a hang.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..conformance.deadline import Deadline

#: The most of one answer read. A task answer is a few hundred bytes, and the recorder keeps
#: none larger than 1 MiB (a larger one is a 502 in the cassette): 1 MiB is ample and bounded.
MAX_ANSWER_BYTES = 1024 * 1024
LOOPBACK_NAMES = ("localhost",)


@dataclass(slots=True)
class Got:
    """One answer: status, media type, JSON body (None: not JSON) and raw body."""

    status: int
    media_type: str
    data: Any
    raw: bytes


class NoAnswer(Exception):
    """No complete answer: the service could not be reached, was too slow, or said too much.
    ``reached`` tells whether anything came back (a connection that never opened did not)."""

    def __init__(self, reason: str, *, reached: bool) -> None:
        super().__init__(reason)
        self.reached = reached


class _TooLarge(Exception):
    pass


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def _got(status: int, content_type: str, raw: bytes) -> Got:
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        data = None
    return Got(status, media_type(content_type), data, raw)


class Target:
    """An HTTP client of one service whose every exchange is bounded in time and in size."""

    def __init__(
        self,
        base_url: str,
        *,
        deadline: float,
        limit: int = MAX_ANSWER_BYTES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.deadline, self.limit = deadline, limit
        # The per-read timeout only matters below the deadline (which cuts every exchange).
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=deadline,
            follow_redirects=False,
            trust_env=False,
            # A fresh connection per exchange, as conform's client has: `Deadline` hears of a
            # socket only when a connection opens, so on a kept-alive one its timer would fire
            # with nothing to shut and a dripping answer would run past it. Parity sends a few
            # requests a second at most: a connect each costs little.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def close(self) -> None:
        self.http.close()

    def send(
        self, method: str, path: str, headers: dict[str, str], content: bytes | None = None
    ) -> Got:
        """The answer to one request; `NoAnswer` when there is no complete one in time."""
        request = self.http.build_request(method, path, headers=headers, content=content)
        cut = Deadline(self.deadline)
        # httpcore's trace hands over each new connection: the deadline's timer shuts its socket.
        request.extensions = {**request.extensions, "trace": cut.trace}
        reached = False
        try:
            response = self.http.send(request, stream=True)
            reached = True
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.limit:
                        raise _TooLarge(_too_large(self.limit, response))
            finally:
                response.close()
        except _TooLarge as exc:
            raise NoAnswer(str(exc), reached=True) from None
        except httpx.HTTPError as exc:
            if cut.fired:
                raise NoAnswer(
                    f"no complete answer within {self.deadline:g} s (--request-deadline: "
                    "connect, head and body together)",
                    reached=reached,
                ) from None
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise NoAnswer(text, reached=reached) from None
        finally:
            cut.cancel()
        if cut.fired:  # the timer went off as the last byte came: the exchange took too long
            raise NoAnswer(
                f"no complete answer within {self.deadline:g} s (--request-deadline)", reached=True
            )
        return _got(response.status_code, response.headers.get("content-type", ""), bytes(body))


def local(url: str) -> bool:
    """Whether ``url`` names this machine (a loopback address or ``localhost``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host (and a port, if any, a number)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read for its check: ValueError when not a port number
    except ValueError:  # "http://[::1" (an unclosed IPv6 host), "http://h:x"
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _too_large(limit: int, response: httpx.Response) -> str:
    declared = response.headers.get("content-length", "")
    size = f"{declared} bytes (its Content-Length)" if declared.isdigit() else f"over {limit} bytes"
    return (
        f"its answer ({response.status_code}) is {size}: parity reads at most {limit} bytes of "
        "one answer"
    )


__all__ = ["MAX_ANSWER_BYTES", "Got", "NoAnswer", "Target", "http_url", "local", "media_type"]
