"""One line of a cassette: the `Exchange` it holds, and whether it can be used at all.

A line is checked whole when it is read (`parse_record`): a value a replay could not serve or
a fit could not sum (a status of 0 or ``true``, a header with CR LF or the body's own
``content-length``, bad base64, a NaN time) makes the reader skip the line with a warning that
names the line and the member, rather than fail later on a request or in a sum.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1
KINDS = ("session", "submit", "poll", "result")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: An HTTP header name (RFC 9110 token) and what a value may not hold (CR, LF, other controls).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Space or tab at either end of a value: RFC 9110 has none there (h11 refuses to send one).
_HEADER_VALUE_PADDED = re.compile(r"^[ \t]|[ \t]$")
#: The sane range of a line's numbers: ``t`` is a clock reading in seconds (a Unix time, or a
#: virtual clock's from 0) before the year 5000; ``latency`` at most a day (an exchange's
#: timeout is at most an hour). A number past them (``1`` and 400 zeros) is not a time, and
#: made every reader fail (an int too large for a float).
MAX_T = 1e11
MAX_LATENCY = 86_400.0
#: Answer headers a replay sets itself or cannot honour: the body's framing and encoding (a
#: hand-added content-length would cut the body, a content-encoding garble it).
FRAMING_HEADERS = frozenset(
    {
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)

Body = dict[str, Any]
#: The deepest JSON a recorder treats as JSON (masks as JSON, keeps as ``{"json": …}``); a
#: deeper body is text: Python's json recurses (RecursionError near 1000 levels, sooner on a
#: deep stack), and no answer of a service is that deep.
MAX_JSON_DEPTH = 100


def json_depth(value: Any) -> int:
    """How deeply ``value`` (parsed JSON) nests lists and objects (0: a scalar), counted
    without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def compact(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError):  # NaN; or nested past Python's recursion limit
        return None


def _body_problem(body: Any, which: str) -> str | None:
    """Why a kept body cannot be served (None: it can), ``which`` naming it in the warning."""
    if body is None:
        return None
    if not isinstance(body, dict):
        return f"the {which} body is not a known encoding"
    if "json" in body:
        text = compact(body["json"])
        ok = text is not None and _utf8(text)
        return None if ok else f"the {which} body's 'json' cannot be written back as JSON"
    if "text" in body:
        ok = isinstance(body["text"], str) and _utf8(body["text"])
        return None if ok else f"the {which} body's 'text' is not valid Unicode text"
    if "b64" in body:
        try:
            base64.b64decode(str(body["b64"]), validate=True)
        except (binascii.Error, ValueError):
            return f"the {which} body's 'b64' is not valid base64"
        return None
    if isinstance(body.get("blob"), str) and SHA256.match(body["blob"]) is not None:
        return None
    return f"the {which} body is not a known encoding (json, text, b64 or a blob's SHA-256)"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the line)
        return False
    return True


def _header_problem(headers: dict[str, str], which: str) -> str | None:
    """Why a table of headers cannot be sent (None: it can)."""
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            return f"{which} header {name!r} is not an HTTP header name"
        if _HEADER_VALUE_BAD.search(value) or not _utf8(value):
            return f"{which} header {name!r} has a control character (CR, LF...) in its value"
        if _HEADER_VALUE_PADDED.search(value):
            return f"{which} header {name!r} has a space or tab at the start or end of its value"
        if which == "response" and name in FRAMING_HEADERS:
            return f"response header {name!r} is the replay's own to set (the body's framing)"
    return None


@dataclass(frozen=True, slots=True)
class Exchange:
    """One recorded request and its answer (``status`` None: no answer, see ``error``)."""

    line: int
    kind: str
    t: float
    method: str
    path: str
    query: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    key_id: str | None = None
    request_body: Body | None = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: Body | None = None
    latency: float = 0.0
    task_id: str | None = None
    error: str | None = None
    #: A result picture: its URL as the answer gave it (masked) and its place in the answer.
    url: str | None = None
    index: int | None = None
    #: With ``status`` None: the status the upstream did send before its answer became
    #: unusable (too large, too slow), so the cassette keeps that it answered (a task created?).
    upstream_status: int | None = None
    #: What the recorder could not keep as it came (a header that is not UTF-8 text...).
    notes: tuple[str, ...] = ()

    @property
    def keyed(self) -> bool:
        """Whether the request carried an ``Authorization`` header."""
        return "authorization" in self.request_headers

    @property
    def caller(self) -> str | None:
        """Who sent the request (`masking.caller`): None without a key, else its key id."""
        if not self.keyed:
            return None
        return self.key_id or ""

    @property
    def content_type(self) -> str:
        return self.response_headers.get("content-type", "")

    @property
    def request_content_type(self) -> str:
        return self.request_headers.get("content-type", "")

    def to_record(self) -> dict[str, Any]:
        """The line's JSON object."""
        record: dict[str, Any] = {"v": FORMAT_VERSION, "kind": self.kind, "t": self.t}
        record.update(method=self.method, path=self.path)
        if self.query:
            record["query"] = self.query
        if self.url is not None:
            record["url"] = self.url
            record["index"] = self.index
        request: dict[str, Any] = {"headers": self.request_headers}
        if self.key_id is not None:
            request["key_id"] = self.key_id
        if self.request_body is not None:
            request["body"] = self.request_body
        record["request"] = request
        record["status"] = self.status
        response: dict[str, Any] = {"headers": self.response_headers}
        if self.response_body is not None:
            response["body"] = self.response_body
        record["response"] = response
        record["latency"] = round(self.latency, 6)
        if self.task_id is not None:
            record["task_id"] = self.task_id
        if self.error is not None:
            record["error"] = self.error
        if self.upstream_status is not None:
            record["upstream_status"] = self.upstream_status
        if self.notes:
            record["notes"] = list(self.notes)
        return record


def _headers(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return None
    return {k.lower(): v for k, v in value.items()}


def _seconds(value: Any, most: float) -> float | None:
    """``value`` as seconds when it is a number from 0 to ``most`` (None: it is not). An int
    is compared before it is made a float (a float of 10**400 raises OverflowError)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return float(value) if 0 <= value <= most else None


def _is_status(value: Any) -> bool:
    """Whether ``value`` is an HTTP status a server can send (not ``true``, not 0)."""
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def parse_record(record: Any, line: int) -> Exchange | str:
    """The exchange of one line, or why the line is not one (a warning)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("v") != FORMAT_VERSION:
        return f"format version {record.get('v')!r}, not {FORMAT_VERSION} (a newer recorder?)"
    kind = record.get("kind")
    if kind not in KINDS:
        return f"unknown kind {kind!r}"
    t = _seconds(record.get("t"), MAX_T)
    if t is None:
        return f"'t' is not a number of seconds from 0 to {MAX_T:.0e}"
    if kind == "session":
        return Exchange(line=line, kind="session", t=t, method="", path="")
    request: dict[str, Any] = record["request"] if isinstance(record.get("request"), dict) else {}
    response: dict[str, Any] = (
        record["response"] if isinstance(record.get("response"), dict) else {}
    )
    request_headers, response_headers = (
        _headers(request.get("headers", {})),
        _headers(response.get("headers", {})),
    )
    status, latency = record.get("status"), _seconds(record.get("latency", 0.0), MAX_LATENCY)
    problems = [
        (not isinstance(record.get("method"), str), "'method' is not text"),
        (not isinstance(record.get("path"), str), "'path' is not text"),
        (request_headers is None, "request headers are not a table of texts"),
        (response_headers is None, "response headers are not a table of texts"),
        (
            status is not None and not _is_status(status),
            f"'status' {status!r} is not an HTTP status (an integer from 100 to 599)",
        ),
        (latency is None, f"'latency' is not a number of seconds from 0 to {MAX_LATENCY:.0f}"),
    ]
    for bad, why in problems:
        if bad:
            return why
    found = (
        _header_problem(request_headers or {}, "request")
        or _header_problem(response_headers or {}, "response")
        or _body_problem(request.get("body"), "request")
        or _body_problem(response.get("body"), "response")
    )
    if found is not None:
        return found
    index, notes = record.get("index"), record.get("notes")
    return Exchange(
        line=line,
        kind=str(kind),
        t=t,
        method=str(record["method"]).upper(),
        path=str(record["path"]),
        query=str(record.get("query", "")),
        request_headers=request_headers or {},
        key_id=request.get("key_id") if isinstance(request.get("key_id"), str) else None,
        request_body=request.get("body"),
        status=status,
        response_headers=response_headers or {},
        response_body=response.get("body"),
        latency=latency or 0.0,
        task_id=record["task_id"] if isinstance(record.get("task_id"), str) else None,
        error=record["error"] if isinstance(record.get("error"), str) else None,
        url=record["url"] if isinstance(record.get("url"), str) else None,
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        notes=tuple(n for n in notes if isinstance(n, str)) if isinstance(notes, list) else (),
        upstream_status=record.get("upstream_status")
        if _is_status(record.get("upstream_status"))
        else None,
    )


class NotFinite(ValueError):
    """A number JSON cannot hold (NaN, Infinity, or past a double's range): Python's json
    reads them, and one in a time or a latency breaks every sum made of it."""


def _not_finite(text: str) -> Any:
    raise NotFinite(f"a number that is not finite ({text})")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotFinite(f"a number that is not finite ({text[:40]})")
    return value


def read_json(raw: bytes) -> Any:
    """A line's JSON value; `NotFinite` for a number JSON cannot hold, RecursionError for one
    nested past Python's recursion limit, ValueError (or UnicodeDecodeError) for anything else
    that is not JSON."""
    return json.loads(raw, parse_constant=_not_finite, parse_float=_finite)


__all__ = [
    "FORMAT_VERSION",
    "FRAMING_HEADERS",
    "KINDS",
    "MAX_JSON_DEPTH",
    "SHA256",
    "Body",
    "Exchange",
    "NotFinite",
    "compact",
    "json_depth",
    "parse_record",
    "read_json",
]
