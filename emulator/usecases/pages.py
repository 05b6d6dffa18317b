"""Pages of the task listing: their size and their cursor.

A full store holds ``max_tasks`` (100,000 by default): one listing of all of them held the
event loop ~7 s and took ~80 MB. So a listing reads one page, at most ``MAX_PAGE`` stored
tasks (filters apply to those: a page may hold fewer matches, even none, while more remain),
and says where the next starts. The cursor is the position of the page's last task
(`stores.base.Position`: its number, never given twice, and the store's numbering epoch),
written as text that callers keep as it is. The next page lists the stored tasks numbered
above it, whether or not that task is still stored (expiry and eviction take the oldest
tasks, those a walk has passed; a reset keeps the numbering going). A cursor of another epoch
(the numbering started again: a restarted emulator on the memory store, another SQLite file,
a wiped Redis) is `CursorGone`, never a page that would skip tasks.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..core.checks import shown
from ..errors import EmulatorError, InvalidRequest
from ..stores.pages import Position

#: The most stored tasks one page reads (and the default).
MAX_PAGE = 1000
#: A cursor as `cursor_of` writes it: the number (at most 15 digits: exact in a Redis score,
#: a double), a dot, the epoch (`stores.base.new_epoch`: 16 hex digits).
_CURSOR = re.compile(r"([0-9]{1,15})\.([0-9a-f]{16})", re.ASCII)


class PageArgumentError(InvalidRequest, ValueError):
    """A page's ``limit`` or ``after`` breaks its rule (400); a ValueError for Python callers."""


class CursorGone(EmulatorError, LookupError):
    """The cursor is of another task numbering (it started again since): 404 (not 410:
    schemathesis' positive data check, which every contract run makes, accepts 404 on
    schema-valid input, not 410), code ``cursor_expired``; list again from the start."""

    status_code = 404
    code = "cursor_expired"


def page_limit(limit: object) -> int:
    """``limit``, an integer from 1 to `MAX_PAGE`; else PageArgumentError naming it."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise PageArgumentError(
            f"limit must be an integer from 1 to {MAX_PAGE}, got {shown(limit, 40)}",
            field="limit",
        )
    return limit


def cursor_of(position: Position) -> str:
    """The cursor of the page that ends at ``position``."""
    return f"{position[0]}.{position[1]}"


def position_of(cursor: object) -> Position:
    """The position a cursor names; PageArgumentError naming ``after`` if it is no cursor."""
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise PageArgumentError(
            f"after must be the 'next' of an earlier page, as it was given, got "
            f"{shown(cursor, 80)}",
            field="after",
        )
    return int(match[1]), match[2]


def gone(cursor: str, listed: str = "tasks") -> CursorGone:
    """The refusal of a cursor of another numbering epoch, in a listing of ``listed``."""
    return CursorGone(
        f"after {shown(cursor, 80)} is a cursor of another numbering of {listed}: the "
        "numbering started again since (the emulator restarted on the memory store, another "
        "SQLite file, a wiped Redis), so a page after it would skip some; list again from the "
        "start, without after",
        field="after",
    )


def page_request(limit: object, after: object) -> tuple[int, Position | None]:
    """A page's ``limit`` (`page_limit`) and the position its ``after`` names (`position_of`;
    None: from the first), each refused naming it."""
    return page_limit(limit), None if after is None else position_of(after)


def next_cursor(more: bool, last: Position | None) -> str | None:
    """The cursor of the page after one that read up to ``last`` (None: none follows)."""
    return cursor_of(last) if more and last is not None else None


T = TypeVar("T")


async def walk(
    read: Callable[[str | None], Awaitable[tuple[list[T], str | None]]], what: str, items: str
) -> list[T]:
    """Every item of a listing, read page by page: ``read(after)`` answers a page's items and
    the next page's cursor. Items removed or added between two pages do not stop the walk;
    CursorGone if the numbering started again between them (the walk would skip items), its
    message naming ``what`` numbering started again and how many ``items`` were read: never
    a partial list passed off as whole."""
    found: list[T] = []
    after: str | None = None
    while True:
        try:
            page, after = await read(after)
        except CursorGone as exc:
            raise CursorGone(
                f"{what} numbering started again while it was read page by page ({len(found)}"
                f" {items} read): {exc.message}",
                field="after",
            ) from None
        found += page
        if after is None:
            return found


__all__ = [
    "MAX_PAGE",
    "CursorGone",
    "PageArgumentError",
    "cursor_of",
    "gone",
    "next_cursor",
    "page_limit",
    "page_request",
    "position_of",
    "walk",
]
