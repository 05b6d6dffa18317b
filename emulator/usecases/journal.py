"""Reading the request journal: a page at a time (``GET /_emulator/requests``), all of it by
walking the pages (the pytest fixture's ``requests()``), or its newest entries (a task's
dashboard page). Each read costs the entries it reads, however many ``journal_limit`` keeps
(up to 10^6): the store finds a page's start without reading what comes before
(`Store.journal_page`), and filters apply to the entries read.
"""

from __future__ import annotations

from typing import Any

from ..core.journal import JournalQuery
from ..stores import Store
from .pages import MAX_PAGE, gone, next_cursor, page_request, walk

Entries = list[dict[str, Any]]


async def journal_page(
    store: Store, query: JournalQuery, limit: object = MAX_PAGE, after: object = None
) -> tuple[Entries, str | None]:
    """The entries matching ``query`` among at most ``limit`` kept entries (1 to `MAX_PAGE`)
    after the cursor ``after`` (None: from the oldest kept), and the cursor of the next page
    (None: none follows). Its cost is ``limit`` entries, whatever the filters match: a page
    may hold fewer matches, even none, while more remain. CursorGone when ``after`` is of
    another numbering (a reset started it again); PageArgumentError for a bad argument."""
    count, position = page_request(limit, after)
    page = await store.journal_page(position, count)
    if page is None:
        raise gone(str(after), "journal entries, which a reset also starts again")
    return query.select(page.entries), next_cursor(page.more, page.last)


async def whole_journal(store: Store, query: JournalQuery) -> Entries:
    """Every kept entry matching ``query``, oldest first, read page by page: entries dropped
    or arriving between two pages do not stop the walk, but CursorGone if the journal's
    numbering started again between them (a reset): never a partial list passed off as whole."""

    async def read(after: str | None) -> tuple[Entries, str | None]:
        return await journal_page(store, query, after=after)

    return await walk(read, "the journal's", "entries")


async def newest_entries(store: Store, query: JournalQuery, count: int = MAX_PAGE) -> Entries:
    """The entries matching ``query`` among the newest ``count`` kept, oldest first."""
    return query.select(await store.journal_tail(count))
