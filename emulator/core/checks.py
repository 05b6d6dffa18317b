"""Checks of single values at the door: numbers finite and in range, text valid and bounded.

Whatever the emulator keeps (settings, fault rules, forced outcomes) is written back later into
JSON answers, the journal, SQLite or Redis. A NaN, an infinity, a 1e308 or a lone UTF-16
surrogate that got in would fail every one of those writes until cleared, so each is refused
here, where it arrives, with a message naming the field. Messages never echo the bad text
itself (it may be what cannot be written), only its ``repr`` cut short.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from typing import Any

#: Longest texts accepted, by kind (characters).
MAX_ID_CHARS = 128
MAX_CODE_CHARS = 128
MAX_MESSAGE_CHARS = 4096
MAX_NAME_CHARS = 256
MAX_TEXT_CHARS = 4096
MAX_MATCH_CHARS = 32_000
MAX_HEADER_VALUE_CHARS = 8192
#: What may be the name of an HTTP header (RFC 9110 "token").
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: What may be a header value to match: visible Latin-1, spaces and tabs (no CR, LF, NUL).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
#: Control characters (C0, DEL, C1): none in an id that goes into paths and logs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


#: Unicode's White_Space characters (PropList.txt): what Go's ``strings.TrimSpace`` and
#: JavaScript's ``trim`` remove (JavaScript also U+FEFF), among them U+3000, the ideographic
#: space of Chinese text. Python's ``str.isspace`` adds U+001C-U+001F, control characters
#: Unicode does not call white space, so it is not used. Zero-width space (U+200B) and the BOM
#: (U+FEFF) are formatting characters, not white space.
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def is_blank(text: str) -> bool:
    """True when ``text`` is empty or only white space (SPEC D-12)."""
    return not text.strip(WHITE_SPACE)


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: safe to put in any message (repr escapes
    surrogates and control characters). Every message that names a value a client sent shows
    it through here, so a refusal stays small whatever the size of what it refuses."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits (sys.get_int_max_str_digits) has none
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def encodable(text: str) -> bool:
    """True when ``text`` is valid Unicode (UTF-8 refuses every lone surrogate)."""
    if text.isascii():  # O(1) in CPython: the string knows its widest character
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_problem(value: str, max_chars: int) -> str | None:
    """Why ``value`` cannot be kept as text (None: it can)."""
    if not encodable(value):
        return "is not valid Unicode: it contains a lone surrogate (\\ud800-\\udfff)"
    if len(value) > max_chars:
        return f"is longer than the limit of {max_chars} characters"
    return None


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a rule id: one path segment of visible text."""
    problem = text_problem(value, MAX_ID_CHARS)
    if problem is None and (not value or "/" in value or _CONTROL.search(value)):
        problem = "must be 1 to 128 characters without '/' or control characters"
    return problem


def header_problem(name: str, value: str) -> str | None:
    """Why (``name``, ``value``) cannot be a header to match (None: it can)."""
    problem = text_problem(name, MAX_NAME_CHARS) or text_problem(value, MAX_HEADER_VALUE_CHARS)
    if problem is not None:
        return problem
    if not _HEADER_NAME.fullmatch(name):
        return f"name {shown(name)} is not an HTTP header name (letters, digits, !#$%&'*+.^_`|~-)"
    if not _HEADER_VALUE.fullmatch(value):
        return f"value of {name} must be visible Latin-1 text (no CR, LF or other controls)"
    return None


def repeated_header(names: Iterable[str]) -> str | None:
    """Why header ``names`` cannot stand together (None: each is there once). HTTP names are
    case-insensitive: ``X-A`` and ``x-a`` are one header, which a rule would send twice (two
    Content-Types) or match on as whichever came last."""
    seen: dict[str, str] = {}
    for name in names:
        first = seen.get(name.lower())
        if first is None:
            seen[name.lower()] = name
            continue
        if first == name:
            return f"{shown(name)} is given twice: give each header once"
        return (
            f"{shown(name)} and {shown(first)} are the same header (names are "
            f"case-insensitive): give each header once"
        )
    return None


def number_problem(value: float, low: float, high: float) -> str | None:
    """Why ``value`` is not a finite number in [low, high] (None: it is)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number between {_num(low)} and {_num(high)}, got {shown(value)}"
    if not low <= value <= high:
        return f"must be between {_num(low)} and {_num(high)}, got {shown(value)}"
    return None


def unknown_fields_problem(names: Iterable[Any], known: Collection[str]) -> str | None:
    """``has unknown field(s): 'a', 'b'`` (sorted, at most five named) for the ``names`` not
    in ``known``, or None: every object the control plane reads (a fault rule, a body) refuses
    a misspelt field in these words rather than take it for one not given."""
    unknown = sorted(shown(name) for name in set(names) - set(known))
    if not unknown:
        return None
    return f"has unknown field(s): {', '.join(unknown[:5])}"


def _num(bound: float) -> str:
    """A bound as people write it: 65535, 0.5, 1e+15."""
    if float(bound).is_integer() and abs(bound) < 10**12:
        return str(int(bound))
    return f"{bound:g}"


__all__ = [
    "MAX_CODE_CHARS",
    "MAX_HEADER_VALUE_CHARS",
    "MAX_ID_CHARS",
    "MAX_MATCH_CHARS",
    "MAX_MESSAGE_CHARS",
    "MAX_NAME_CHARS",
    "MAX_TEXT_CHARS",
    "encodable",
    "header_problem",
    "id_problem",
    "number_problem",
    "repeated_header",
    "shown",
    "text_problem",
    "unknown_fields_problem",
]
