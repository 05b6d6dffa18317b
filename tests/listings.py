"""The whole of a store's listings, as the tests read them: page by page, as every request
does. The store has no read of a whole listing (no request needs one, and the usage log and
the journal may be long); a test that wants all of one walks its pages here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from emulator.core.billing import Charge
from emulator.stores.base import Store
from emulator.stores.pages import Position


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
