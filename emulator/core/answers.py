"""A fault rule's own answer (effect ``respond``, like WireMock's stubs and respx's routes): any
final status, a JSON value or a text body, and headers.

Checked where the rule arrives (``emulator.core.fault_parsing.parse_rule``), so an answer that
could break HTTP or a later write never gets in: the status is a final one (200-599: a 1xx is not
an answer, and HTTP servers refuse to send one as such), the body is bounded like a
control-plane request and encodable, no body goes with a status that cannot carry one, and the
headers are valid, bounded and never the ones that frame the message (the server sets those).
Each ``*_problem`` says why (None: fine); the caller names the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .checks import header_problem, repeated_header, shown

#: Largest body: the control plane's own request cap (a rule's answer is never bigger than
#: what could be sent to install it).
MAX_ANSWER_BYTES = 1024 * 1024
#: Deepest JSON body: the stores write rules as JSON and read them back with ``json.loads``,
#: whose recursion must never be what limits a rule.
MAX_ANSWER_DEPTH = 64
MAX_ANSWER_HEADERS = 32
#: Final statuses only (1xx are interim answers, never the answer).
LOWEST_STATUS, HIGHEST_STATUS = 200, 599
#: Statuses that carry no body (RFC 9110 15.3.5, 15.3.6, 15.4.5).
NO_CONTENT = frozenset({204, 205, 304})
#: Hop-by-hop and framing headers (RFC 9110 7.6.1): the server decides them, a rule must not.
FORBIDDEN_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Content-Type when the rule gives none: per kind of body.
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"

_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def status_problem(status: Any) -> str | None:
    if not isinstance(status, int) or isinstance(status, bool):
        return f"is required: an integer from {LOWEST_STATUS} to {HIGHEST_STATUS}"
    if not LOWEST_STATUS <= status <= HIGHEST_STATUS:
        return (
            f"must be between {LOWEST_STATUS} and {HIGHEST_STATUS} (a final answer; 1xx are "
            f"interim), got {status}"
        )
    return None


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_ANSWER_DEPTH:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def json_bytes(value: Any) -> bytes:
    """``value`` as the answer's JSON body (compact UTF-8)."""
    return _encode(value).encode("utf-8")


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be the answer's JSON body."""
    if _depth(value) > MAX_ANSWER_DEPTH:
        return f"nests deeper than the limit of {MAX_ANSWER_DEPTH} levels"
    try:
        size = len(json_bytes(value))
    except (TypeError, ValueError) as exc:  # a NaN, a set, a lone surrogate, a non-text key
        reason = "a lone surrogate" if isinstance(exc, UnicodeEncodeError) else str(exc)
        return f"is not a JSON value ({reason:.80})"
    if size > MAX_ANSWER_BYTES:
        return f"is larger than the limit of {MAX_ANSWER_BYTES} bytes as JSON"
    return None


def body_problem(value: str) -> str | None:
    """Why text ``value`` cannot be the answer's body (valid Unicode is checked before)."""
    if len(value.encode("utf-8")) > MAX_ANSWER_BYTES:
        return f"is larger than the limit of {MAX_ANSWER_BYTES} bytes as UTF-8"
    return None


def headers_problem(headers: Any) -> str | None:
    """Why ``headers`` cannot be the answer's headers."""
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        return "must map header names to string values"
    if len(headers) > MAX_ANSWER_HEADERS:
        return f"may name at most {MAX_ANSWER_HEADERS} headers"
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            return problem
        if value != value.strip(" \t"):
            # RFC 9110 5.5: a field value has no white space at its ends; h11 (uvicorn's
            # default HTTP) refuses to send one, which would drop the connection unanswered.
            return (
                f"{shown(name)}: the value has spaces or tabs at its start or end, which an "
                f"HTTP field value cannot have"
            )
        if name.lower() in FORBIDDEN_HEADERS:
            return (
                f"{shown(name)} is a hop-by-hop or framing header, which the server sets: "
                f"leave out {', '.join(sorted(FORBIDDEN_HEADERS))}"
            )
    # Names differing only in case would go out as two fields (two Content-Types): refused,
    # as a respond rule's headers are one value per name (docs/hardening.md).
    return repeated_header(headers)


def answer(
    json_value: Any, body: str | None, headers: Mapping[str, str] | None
) -> tuple[bytes, list[tuple[str, str]]]:
    """The answer's body and headers, Content-Type by the kind of body unless given."""
    given = dict(headers or {})
    if json_value is not None:
        content, media_type = json_bytes(json_value), JSON_TYPE
    else:
        content, media_type = (body or "").encode("utf-8"), TEXT_TYPE
    out = list(given.items())
    has_body = json_value is not None or body is not None
    if has_body and not any(name.lower() == "content-type" for name in given):
        out.append(("Content-Type", media_type))
    return content, out


__all__ = [
    "FORBIDDEN_HEADERS",
    "HIGHEST_STATUS",
    "LOWEST_STATUS",
    "MAX_ANSWER_BYTES",
    "MAX_ANSWER_DEPTH",
    "MAX_ANSWER_HEADERS",
    "NO_CONTENT",
    "answer",
    "body_problem",
    "headers_problem",
    "json_bytes",
    "json_problem",
    "status_problem",
]
