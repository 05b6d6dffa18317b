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
from ..errors import EmulatorError
from ..stores import Store
from .configuration import Configuration
from .pages import MAX_PAGE, gone, next_cursor, page_request, walk

Entries = list[dict[str, Any]]


class JournalKeeper:
    """Appends the journal's entries, the newest ``journal_limit`` kept. One rule for every
    limit, 0 included: the first request after the limit was lowered trims the journal to
    it (the store trims as it appends). At 0 nothing is appended, so that request empties the
    journal instead, once; requests after it cost the store nothing (the per-request price
    of the Redis tests that measure the request path with ``journal_limit = 0``). That
    emptying is the bound's, not a clear: the entries it removed count as dropped
    (`Store.clear_journal` without ``mark``).

    It counts the requests this process served whose entries no page will number: while the
    limit was 0 (``unrecorded``), and those the store could not take (``failed``: it was
    unavailable) or lost behind the request (`Store.journal_lost`): `missing`. Per process:
    with several workers each counts its own."""

    __slots__ = ("_config", "_emptied", "_store", "failed", "unrecorded")

    def __init__(self, store: Store, config: Configuration) -> None:
        self._store, self._config = store, config
        #: Whether this emulator emptied the journal since it last appended to it.
        self._emptied = False
        #: Requests this emulator did not journal (``limit`` 0) since it started or was reset
        #: or the journal cleared: numbered nowhere, so only this count tells a reader the
        #: journal misses them.
        self.unrecorded = 0
        #: Requests whose entry the store refused (unavailable) since then: numbered nowhere.
        self.failed = 0

    def lost(self) -> int:
        """Entries of this process's requests lost to the store: refused or lost behind."""
        return self.failed + self._store.journal_lost()

    def missing(self) -> int:
        """Every request of this process since the last reset or clear that no entry kept or
        dropped stands for (`unrecorded` and `lost`)."""
        return self.unrecorded + self.lost()

    def unwritten(self) -> None:
        """A request answered 503 because the store was unavailable: its entry is counted
        missing (as ``unrecorded`` at limit 0, else ``failed``) without asking the store again,
        which would hold the answer another ``redis_timeout`` or two."""
        if self.limit <= 0:
            self.unrecorded += 1
        else:
            self.failed += 1

    def forget(self) -> None:
        """A reset or a clear: a new window, nothing missing from it yet."""
        self.unrecorded = self.failed = 0

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
        self.unrecorded += 1
        if not self._emptied:
            await self._store.clear_journal(mark=False)  # dropped by the bound 0, not cleared
            self._emptied = True


class JournalIncomplete(EmulatorError, RuntimeError):
    """The journal cannot cover what a reader judges: ``journal_limit`` dropped entries of it,
    or kept none. Not an AssertionError: a test expecting an assertion to fail must not pass
    because the journal could not tell."""

    status_code = 409
    code = "journal_incomplete"


def check_whole(limit: int, dropped: int, unrecorded: int, lost: int = 0) -> None:
    """JournalIncomplete, naming ``journal_limit`` and how many entries are missing, unless a
    walk of the journal saw every entry since its last reset or clear: ``dropped`` by the
    bound (`JournalPage.dropped`), ``unrecorded`` while the limit was 0, ``lost`` to the
    store (`JournalKeeper.lost`)."""
    remedy = (
        "raise journal_limit (@pytest.mark.image_emulator(journal_limit=...) or "
        "configure(journal_limit=...)), or read what is kept with requests(partial=True)"
    )
    if limit == 0:
        raise JournalIncomplete(
            "journal_limit is 0: the journal keeps no entry, so what was sent cannot be "
            f"told; {remedy}",
            field="journal_limit",
        )
    if unrecorded:
        raise JournalIncomplete(
            f"{unrecorded} requests were not journaled while journal_limit was 0, so what "
            f"was sent cannot be told; {remedy}",
            field="journal_limit",
        )
    if lost:
        raise JournalIncomplete(
            f"{lost} journal entries were lost to a store outage (never written), so what "
            "was sent cannot be told; clear the journal (or reset) and send again, or read "
            "what is kept with requests(partial=True)",
            field="journal",
        )
    if dropped:
        raise JournalIncomplete(
            f"the journal dropped {dropped} of its entries since its last reset or clear "
            f"(journal_limit = {limit} keeps the newest {limit}), so what was sent cannot be "
            f"told; {remedy}",
            field="journal_limit",
        )


async def journal_page(
    store: Store, query: JournalQuery, limit: object = MAX_PAGE, after: object = None
) -> tuple[Entries, str | None, int]:
    """The entries matching ``query`` among at most ``limit`` kept entries (1 to `MAX_PAGE`)
    after the cursor ``after`` (None: from the oldest kept), the cursor of the next page
    (None: none follows), and how many entries the bound dropped between the cursor (none:
    the last clear or reset) and the page (`JournalPage.dropped`). Its cost is ``limit``
    entries, whatever the filters match: a page may hold fewer matches, even none, while
    more remain. CursorGone when ``after`` is of another numbering (a reset started it
    again); PageArgumentError for a bad argument."""
    count, position = page_request(limit, after)
    page = await store.journal_page(position, count)
    if page is None:
        raise gone(str(after), "journal entries, which a reset also starts again")
    return query.select(page.entries), next_cursor(page.more, page.last), page.dropped


async def whole_journal(store: Store, query: JournalQuery) -> tuple[Entries, int]:
    """Every kept entry matching ``query``, oldest first, read page by page, and how many
    entries the bound dropped from it (before the first page or between two): entries
    dropped or arriving between two pages do not stop the walk, but CursorGone if the
    journal's numbering started again between them (a reset): never a partial list passed
    off as whole."""
    dropped = 0

    async def read(after: str | None) -> tuple[Entries, str | None]:
        nonlocal dropped
        entries, following, lost = await journal_page(store, query, after=after)
        dropped += lost
        return entries, following

    return await walk(read, "the journal's", "entries"), dropped


async def newest_entries(store: Store, query: JournalQuery, count: int = MAX_PAGE) -> Entries:
    """The entries matching ``query`` among the newest ``count`` kept, oldest first."""
    return query.select(await store.journal_tail(count))


__all__ = [
    "JournalIncomplete",
    "JournalKeeper",
    "check_whole",
    "journal_page",
    "newest_entries",
    "whole_journal",
]
