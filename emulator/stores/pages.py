"""What the stores' listings read: a position in a numbering (`Position`, `new_epoch`), the
pages of tasks, charges and journal entries, and the checks of a listing's arguments, done once
here for every backend (`stores.base` names them too)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from ..core.billing import Charge
from ..core.tasks import Task


def listed_at_most(newest: int | None) -> int | None:
    """``newest`` of `Store.list_tasks`, checked: None (every task) or an integer >= 0. Raises
    ValueError naming ``newest`` otherwise (the stores would each read a negative one
    differently: SQLite's LIMIT as none, Redis's ZRANGE as a rank from the start)."""
    if newest is not None and (
        not isinstance(newest, int) or isinstance(newest, bool) or newest < 0
    ):
        raise ValueError(f"newest must be None or an integer >= 0, not {newest!r}")
    return newest


#: Where a task stands in submission order: (its number, the store's numbering epoch).
#: Numbers rise with each submission and are never given twice by one numbering, also not
#: after ``reset``: "the stored tasks numbered above n" is exact whether or not task n is still
#: stored. The epoch names the numbering (`new_epoch`, made when it starts: a new memory store,
#: a new SQLite file, an empty Redis prefix); a position of another epoch is no position here.
Position = tuple[int, str]


def new_epoch() -> str:
    """A numbering's epoch: 16 random hex digits (64 bits: two numberings do not share one)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class TaskPage:
    """What `Store.task_page` read: ``tasks`` in submission order, ``last`` the position of the
    last of them (None when there are none), ``more``: stored tasks follow it."""

    tasks: list[Task]
    last: Position | None
    more: bool


@dataclass(frozen=True, slots=True)
class ChargePage:
    """What `Store.charge_page` read: ``charges`` of the usage log in hold order, ``last`` the
    position of the last of them (None when there are none), ``more``: listed charges follow."""

    charges: list[Charge]
    last: Position | None
    more: bool


@dataclass(frozen=True, slots=True)
class JournalPage:
    """What `Store.journal_page` read: ``entries`` (each with its ``seq``) in arrival order,
    ``last`` the position of the last of them (None when there are none), ``more``: kept
    entries follow it; ``dropped``: how many entries numbered after the page's cursor (none:
    since the journal was last cleared, or numbered from 1) and before its first entry (none
    listed: through the newest numbered) the ``journal_limit`` bound dropped
    (`dropped_before`)."""

    entries: list[dict[str, Any]]
    last: Position | None
    more: bool
    dropped: int = 0


def dropped_before(first: int | None, newest: int, cleared: int, after: Position | None) -> int:
    """`JournalPage.dropped` of a page whose first entry is numbered ``first`` (None: it lists
    none), read with the newest number given (``newest``) and the newest number when the
    journal was last cleared (``cleared``; 0 since its numbering started): the numbers between
    the cursor (or the clear) and ``first`` that no entry kept holds. A clear drops entries
    on purpose; only the bound's drops are counted."""
    base = max(cleared, 0 if after is None else after[0])
    end = newest + 1 if first is None else first
    return max(0, end - base - 1)


def paged(after: Position | None, count: int) -> tuple[Position | None, int]:
    """``after`` and ``count`` of `Store.task_page`, checked: ``after`` None or (an integer >= 0,
    an epoch: a string), ``count`` an integer >= 1. Raises ValueError naming the argument
    otherwise."""
    if after is not None and not (
        isinstance(after, tuple)
        and len(after) == 2
        and isinstance(after[0], int)
        and not isinstance(after[0], bool)
        and after[0] >= 0
        and isinstance(after[1], str)
    ):
        raise ValueError(f"after must be None or a (number >= 0, epoch) pair, not {after!r:.80}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be an integer >= 1, not {count!r:.40}")
    return after, count


__all__ = [
    "ChargePage",
    "JournalPage",
    "Position",
    "TaskPage",
    "dropped_before",
    "listed_at_most",
    "new_epoch",
    "paged",
]
