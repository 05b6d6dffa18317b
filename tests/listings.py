"""A store's listings (tasks, the usage log, the journal) as the tests read them: the whole of
one, page by page, as every request does (the store has no read of a whole listing: no request
needs one, and the usage log and the journal may be long); and `counting`, how much of one each
read a request made returned (what bounds its cost)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from emulator.core.billing import Charge
from emulator.stores.base import Store
from emulator.stores.pages import ChargePage, JournalPage, Position, TaskPage


async def whole_usage_log(
    store: Store, count: int = 1_000, between: Callable[[int], Awaitable[None]] | None = None
) -> list[Charge]:
    """Every charge of the usage log in hold order, ``count`` a page (`Store.charge_page`),
    each page checked (of one numbering, at most ``count``). ``between(n)`` is awaited after
    the n-th page, when more follow (settlements, trims, holds in the middle of a walk)."""
    listed: list[Charge] = []
    after: Position | None = None
    pages = 0
    while True:
        page = await store.charge_page(after, count)
        assert page is not None, "the charge numbering started again during the walk"
        assert len(page.charges) <= count
        listed += page.charges
        pages += 1
        if not page.more:
            return listed
        assert page.last is not None
        after = page.last
        if between is not None:
            await between(pages)


async def whole_journal(
    store: Store, after: Position | None = None, count: int = 1_000
) -> list[dict[str, Any]]:
    """Every kept journal entry after ``after`` (None: all) in arrival order, ``count`` a page
    (`Store.journal_page`), each page checked (of one numbering, at most ``count``, its
    cursor the number of its last entry)."""
    listed: list[dict[str, Any]] = []
    while True:
        page = await store.journal_page(after, count)
        assert page is not None, "the journal numbering started again during the walk"
        assert len(page.entries) <= count
        if page.entries:
            assert page.last is not None and page.last[0] == page.entries[-1]["seq"]
        listed += page.entries
        if not page.more:
            return listed
        after = page.last


def counting(store: Store, *reads: str) -> list[int]:
    """Instrument ``store``: how many items (tasks, charges, entries) each call of the methods
    named ``reads`` returned, in call order, whichever of them a request used (name every read
    of the listing that a request might use; a name the store lacks is an error)."""
    read: list[int] = []
    for name in reads:
        method = getattr(store, name)

        async def counted(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            result = await _method(*args, **kwargs)
            read.append(_items(result))
            return result

        setattr(store, name, counted)
    return read


def _items(result: object) -> int:
    """How many items a listing's read returned (None: a cursor refused, none)."""
    if result is None:
        return 0
    if isinstance(result, list):
        return len(result)
    if isinstance(result, TaskPage):
        return len(result.tasks)
    if isinstance(result, ChargePage):
        return len(result.charges)
    if isinstance(result, JournalPage):
        return len(result.entries)
    raise TypeError(f"not a read of a listing: {result!r}")
