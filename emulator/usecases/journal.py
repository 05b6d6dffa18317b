"""Keeping the request journal within ``journal_limit`` (`JournalKeeper`), and reading it:
a page at a time (``GET /_emulator/requests``), all of it by walking the pages (the pytest
fixture's ``requests()``), or its newest entries (a task's dashboard page). Each read costs the
entries it reads, however many ``journal_limit`` keeps (up to 10^6): the store finds a page's
start without reading what comes before (`Store.journal_page`), and filters apply to the
entries read.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from ..core.journal import JournalQuery, PendingEntry
from ..stores import Store
from .configuration import Configuration
from .pages import MAX_PAGE, gone, next_cursor, page_request, walk

Entries = list[dict[str, Any]]


class JournalKeeper:
    """Appends the journal's entries, the newest ``journal_limit`` kept. One rule for every
    limit, 0 included: the first request after the limit was lowered trims the journal to
    it (the store trims as it appends). At 0 nothing is appended, so that request empties the
    journal instead, once; requests after it cost the store nothing (the per-request price
    of the Redis tests that measure the request path with ``journal_limit = 0``)."""

    __slots__ = ("_config", "_emptied", "_store")

    def __init__(self, store: Store, config: Configuration) -> None:
        self._store, self._config = store, config
        #: Whether this emulator emptied the journal since it last appended to it.
        self._emptied = False

    @property
    def limit(self) -> int:
        return self._config.settings.journal_limit

    def append(self, pending: PendingEntry) -> Awaitable[None]:
        """Record one request (``limit`` > 0): numbered, the newest ``limit`` kept. The store's
        own awaitable, handed back: a coroutine of this method's around it would cost every
        request ~2.5k instructions (`make instructions`: +2 % of a poll)."""
        self._emptied = False
        return self._store.append_pending(pending, self._config.settings.journal_limit)

    async def keep_none(self) -> None:
        """A request while ``limit`` is 0: what the journal still holds goes (once)."""
        if not self._emptied:
            await self._store.clear_journal()
            self._emptied = True


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
