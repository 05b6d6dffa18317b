"""Limits on request heads at the protocol layer: uvicorn's protocol classes, subclassed.

``max_header_bytes`` is also checked in the app (``app.EmulatorApp``), but only once the HTTP
parser has buffered the whole head: one connection streaming an endless header grew RSS without
bound (httptools buffers a header value until it ends), and 19,980 connections that never
finished their heads were held until descriptors ran out. Here, before bytes reach the parser:

- a head (request line and headers) longer than ``head_limit`` is answered 431 and the
  connection closed, within one network read of passing the limit;
- a head not complete ``head_timeout`` seconds after the connection opened (or after its first
  byte, for later requests on a kept-alive connection) is answered 408 and closed (closed
  silently if nothing was sent).

uvicorn has no public hook for either (``h11_max_incomplete_event_size`` bounds h11's buffer,
but h11 only, answering 400), so this module subclasses ``H11Protocol`` and
``HttpToolsProtocol`` and relies on a few of their attributes (``transport``, ``cycle`` and
its ``response_complete``; ``conn`` for h11; the parser callbacks for httptools).
``tests/test_http_guard.py`` fails loudly if uvicorn changes them.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HAS_HTTPTOOLS = importlib.util.find_spec("httptools") is not None
if HAS_HTTPTOOLS:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
else:  # pragma: no cover - httptools is optional (the "speed" extra)
    HttpToolsProtocol = H11Protocol  # type: ignore[misc,assignment] # named, never served


def head_end(data: bytes) -> int:
    """Where the first empty line in ``data`` ends (a head's end; bare LF tolerated, as both
    parsers do), or -1: the end of the first match of ``rb"\r?\n\r?\n"``, found by two
    ``bytes.find`` (the regular expression tries its optional CR at every byte). Its first LF
    starts "\n\n" or "\n\r\n", and the earlier of the two is the first match
    (tests/test_http_guard.py checks it against the regular expression)."""
    lf = data.find(b"\n\n")
    crlf = data.find(b"\n\r\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf + 2
    return -1 if crlf < 0 else crlf + 3


#: Room for the request line on top of ``max_header_bytes`` (the app counts headers only).
REQUEST_LINE_BYTES = 16 * 1024


def head_limit(max_header_bytes: int) -> int:
    """The longest head the protocol accepts for a ``max_header_bytes`` setting."""
    return max_header_bytes + REQUEST_LINE_BYTES


def _answer(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"code": code, "message": message, "data": None}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _HeadGuard:
    """Counts the bytes of each request head before the parser sees them; see the module."""

    # Set by the uvicorn protocol class this is mixed into.
    transport: asyncio.Transport
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, head_limit: int, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_limit = head_limit
        self._head_timeout = head_timeout
        self._head_bytes = 0
        self._tail = b""  # the last 3 bytes of the head so far: its end may straddle reads
        self._timer: asyncio.TimerHandle | None = None

    # -- what the parser is doing (per parser) ---------------------------------------------
    def _in_body(self) -> bool:
        """Whether the next bytes belong to a request body (not to a head)."""
        raise NotImplementedError

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        end = -1
        if not self._in_body():
            window = self._tail + data
            end = head_end(window)
            if end < 0:
                self._head_bytes += len(data)
                self._tail = window[-3:]
            else:  # the head ends here; what follows is a body, or the next head
                self._head_bytes += end - len(self._tail)
                self._tail = b""
            if self._head_bytes > self._head_limit:
                self._refuse(
                    _answer(
                        431,
                        "Request Header Fields Too Large",
                        "header_too_large",
                        "request head (request line and headers) is larger than the limit "
                        f"of {self._head_limit} bytes",
                    )
                )
                return
            if end >= 0:
                self._head_bytes = 0
            elif self._timer is None:
                # A head begun and not complete: its deadline runs from now. A head that
                # arrives whole in one read (almost every request) never needs a timer.
                self._arm()
        cycle = self.cycle
        super().data_received(data)  # type: ignore[misc]
        # The head came in time: it ended in these bytes (a pipelined one may wait in the
        # parser's buffer for its turn), or the parser made a request of it.
        if self._timer is not None and (end >= 0 or self.cycle is not cycle):
            self._disarm()

    # -- the deadline ----------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self._head_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._in_body():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; a pipelined head is timed once it is read
        if self._head_bytes == 0 and not self._tail:
            self.transport.close()  # nothing sent at all: nobody to answer
            return
        self._refuse(
            _answer(
                408,
                "Request Timeout",
                "request_timeout",
                f"the request head was not complete within {self._head_timeout:g} s "
                "(header_timeout)",
            )
        )

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()


class GuardedH11Protocol(_HeadGuard, H11Protocol):
    """uvicorn's h11 protocol with the head limit and deadline."""

    def _in_body(self) -> bool:
        return bool(self.conn.their_state is h11.SEND_BODY)


class GuardedHttpToolsProtocol(_HeadGuard, HttpToolsProtocol):
    """uvicorn's httptools protocol with the head limit and deadline."""

    _body_open = False

    def _in_body(self) -> bool:
        return self._body_open

    def on_headers_complete(self) -> None:
        self._body_open = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # Also when the answer went out before the body was read (uvicorn's own callback
        # returns early then): the next bytes are a head again.
        self._body_open = False
        super().on_message_complete()


def protocol(http: str, max_header_bytes: int, header_timeout: float) -> Any:
    """What ``uvicorn.run(http=...)`` takes: a factory of guarded protocols for ``http``
    ("auto": httptools when installed, else h11). A ``functools.partial`` of a module-level
    class, so ``--workers`` can hand it to spawned processes."""
    if http == "auto":
        http = "httptools" if HAS_HTTPTOOLS else "h11"
    cls: type[_HeadGuard] = GuardedHttpToolsProtocol if http == "httptools" else GuardedH11Protocol
    if http == "httptools" and not HAS_HTTPTOOLS:
        raise ValueError("--http httptools needs httptools installed (pip install httptools)")
    return functools.partial(
        cls, head_limit=head_limit(max_header_bytes), head_timeout=header_timeout
    )


__all__ = [
    "REQUEST_LINE_BYTES",
    "GuardedH11Protocol",
    "GuardedHttpToolsProtocol",
    "head_limit",
    "protocol",
]
