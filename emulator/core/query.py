"""Query parameters of the control plane: the ones a route takes, each at most once.

A parameter a route does not take is refused with a 400 naming it and listing those it does
take, never ignored: ``GET /_emulator/tasks?modle=x`` that lists every task, or
``DELETE /_emulator/requests?model=x`` that clears the whole journal, would answer a question
nobody asked as if it were the one asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import InvalidRequest
from .checks import shown

#: Longest parameter name echoed into a message or a field.
_MAX_NAME = 200


class QueryError(InvalidRequest, ValueError):
    """A query parameter that is unknown, repeated or could never match; a 400 on the control
    plane, a ValueError for the pytest fixture's callers."""


def unknown_parameter(
    name: str, known: Sequence[str], what: str = "query parameter", hint: str = ""
) -> QueryError:
    """The refusal of ``name``, which is none of ``known``; ``hint`` says more."""
    listing = (
        f"the known ones are {', '.join(known)}"
        if known
        else "this route takes no query parameters"
    )
    return QueryError(f"unknown {what} {shown(name)}; {listing}{hint}", field=name[:_MAX_NAME])


def query_values(
    items: Iterable[tuple[str, str]],
    known: Sequence[str],
    what: str = "query parameter",
    hint: str = "",
) -> dict[str, str]:
    """The value of each parameter of ``items`` (name, value pairs); a QueryError for one
    that is not ``known`` or is given twice."""
    values: dict[str, str] = {}
    for name, value in items:
        if name not in known:
            raise unknown_parameter(name, known, what, hint)
        if name in values:
            raise QueryError(f"{what} {shown(name)} may be given only once", field=name)
        values[name] = value
    return values


def one_of(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` when it is one of ``allowed``; else a QueryError naming ``name``: a filter
    that can never match is a typo, not an empty answer."""
    if value not in allowed:
        raise QueryError(
            f"{name} must be one of {', '.join(allowed)}, got {shown(value)}", field=name
        )
    return value


__all__ = ["QueryError", "one_of", "query_values", "unknown_parameter"]
