"""What every Store backend's journal pages must do (``Store.journal_page``): mixed into
``StoreContract`` (tests/store_contract.py), so it runs on the memory, SQLite and Redis stores,
with their ``store`` and ``renumbered`` fixtures."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.stores.base import Store
from emulator.stores.pages import JournalPage, Position

from .listings import whole_journal


async def fill(store: Store, first: int, last: int, limit: int) -> None:
    """Append entries ``{"i": first}`` to ``{"i": last}`` to a journal bounded to ``limit``."""
    for i in range(first, last + 1):
        await store.append_journal({"i": i}, limit)


async def page_of(store: Store, after: Position | None, count: int) -> JournalPage:
    page = await store.journal_page(after, count)
    assert page is not None
    assert len(page.entries) <= count
    if page.entries:  # the cursor is the last entry's number
        assert page.last is not None and page.last[0] == page.entries[-1]["seq"]
    return page


class JournalPageContract:
    async def test_journal_pages_walk_2500_entries_each_once_in_arrival_order(
        self, store: Store
    ) -> None:
        await fill(store, 1, 2_500, 10_000)
        listed: list[dict[str, Any]] = []
        after, pages, epochs = None, 0, set()
        while True:
            page = await page_of(store, after, 1_000)
            pages += 1
            listed += page.entries
            if not page.more:
                break
            after = page.last
            assert after is not None
            epochs.add(after[1])
        assert [(e["i"], e["seq"]) for e in listed] == [(i, i) for i in range(1, 2_501)]
        assert pages == 3 and len(epochs) == 1
        assert listed == await whole_journal(store, None, 700)  # the same, by other pages

    async def test_a_journal_page_reads_at_most_its_count_and_says_more_follow(
        self, store: Store
    ) -> None:
        await fill(store, 1, 5, 10)
        first = await page_of(store, None, 2)
        assert [e["i"] for e in first.entries] == [1, 2] and first.more
        last = await page_of(store, first.last, 3)
        assert [e["i"] for e in last.entries] == [3, 4, 5] and not last.more
        end = await page_of(store, last.last, 3)
        assert (end.entries, end.last, end.more) == ([], None, False)
        await fill(store, 6, 6, 10)  # arrives after the walk ended: the last cursor finds it
        assert [e["i"] for e in (await page_of(store, last.last, 3)).entries] == [6]

    async def test_a_walk_by_pages_lists_each_kept_entry_once_while_entries_come_and_go(
        self, store: Store
    ) -> None:
        # A journal of 50 entries; between two pages of 20, 35 entries arrive and as many of
        # the oldest leave (those the walk passed, and some it had not reached yet).
        await fill(store, 1, 50, 50)
        listed: list[int] = []
        after: Position | None = None
        arrived = 50
        for _ in range(200):
            page = await page_of(store, after, 20)
            seqs = [e["seq"] for e in page.entries]
            kept = [e["seq"] for e in await whole_journal(store)]
            # Exactly the kept entries after the cursor, in order: none skipped or repeated.
            above = [s for s in kept if after is None or s > after[0]]
            assert seqs == above[:20]
            assert page.more == (len(above) > 20)
            listed += seqs
            if not page.more:
                break
            after = page.last
            if arrived < 2_500:
                await fill(store, arrived + 1, arrived + 35, 50)
                arrived += 35
        assert listed == sorted(set(listed))  # each once, in arrival order
        assert listed[-1] == arrived and len(listed) > 20

    async def test_a_journal_cursor_numbered_beyond_every_entry_reads_an_empty_page(
        self, store: Store
    ) -> None:
        # A cursor of this numbering that no page gave (the largest number a cursor may carry):
        # an empty page, never an error (Redis's Lua would format so large an index as 1e+14).
        await fill(store, 1, 3, 10)
        first = await page_of(store, None, 1)
        assert first.last is not None
        for number in (3, 4, 10**14 + 7, 10**15 - 1):
            page = await page_of(store, (number, first.last[1]), 1_000)
            assert (page.entries, page.last, page.more) == ([], None, False)

    async def test_a_journal_cursor_goes_on_after_a_clear_with_the_entries_after_it(
        self, store: Store
    ) -> None:
        await fill(store, 1, 3, 10)
        first = await page_of(store, None, 2)
        await store.clear_journal()  # numbering goes on: the cursor's entry is simply gone
        await fill(store, 4, 5, 10)
        page = await page_of(store, first.last, 10)
        assert [(e["i"], e["seq"]) for e in page.entries] == [(4, 4), (5, 5)]

    async def test_a_journal_page_counts_the_entries_the_bound_dropped_not_those_cleared(
        self, store: Store
    ) -> None:
        """`JournalPage.dropped`: what a reader needs to tell a whole journal from one that
        lost entries (the fixture's assert_requested refuses to judge the latter)."""
        await fill(store, 1, 3, 10)
        assert (await page_of(store, None, 10)).dropped == 0
        await fill(store, 4, 7, 3)  # the bound keeps 5, 6, 7: 1 to 4 dropped
        first = await page_of(store, None, 2)
        assert [e["seq"] for e in first.entries] == [5, 6] and first.dropped == 4
        rest = await page_of(store, first.last, 10)
        assert [e["seq"] for e in rest.entries] == [7] and rest.dropped == 0
        await fill(store, 8, 12, 3)  # 8 and 9 dropped after the cursor at 6 (7 too)
        later = await page_of(store, first.last, 10)
        assert [e["seq"] for e in later.entries] == [10, 11, 12] and later.dropped == 3
        await store.clear_journal()  # on purpose: nothing dropped since
        cleared = await page_of(store, None, 10)
        assert (cleared.entries, cleared.dropped) == ([], 0)
        await fill(store, 13, 14, 10)
        assert (await page_of(store, None, 10)).dropped == 0
        await fill(store, 15, 16, 1)  # 13, 14, 15 dropped since the clear
        assert (await page_of(store, None, 10)).dropped == 3
        await store.reset()  # numbered from 1 again: nothing dropped
        assert (await page_of(store, None, 10)).dropped == 0
        await fill(store, 1, 2, 10)
        assert (await page_of(store, None, 10)).dropped == 0

    async def test_a_journal_emptied_without_mark_counts_its_entries_as_dropped(
        self, store: Store
    ) -> None:
        """`Store.clear_journal(mark=False)`: what ``journal_limit`` 0 does (the bound's
        emptying, not a reader's clear), so a later page still tells the entries are gone."""
        await fill(store, 1, 3, 10)
        await store.clear_journal(mark=False)
        emptied = await page_of(store, None, 10)
        assert (emptied.entries, emptied.dropped) == ([], 3)
        await fill(store, 4, 5, 10)
        page = await page_of(store, None, 10)
        assert [e["seq"] for e in page.entries] == [4, 5] and page.dropped == 3
        await store.clear_journal()  # a clear with its mark: nothing dropped since
        await fill(store, 6, 6, 10)
        assert (await page_of(store, None, 10)).dropped == 0
        assert store.journal_lost() == 0  # every entry given was numbered

    async def test_a_journal_cursor_from_before_a_reset_is_refused(self, store: Store) -> None:
        await fill(store, 1, 3, 10)
        before = await page_of(store, None, 1)
        assert before.last is not None
        await store.reset()  # the numbering starts again at 1: "after 1" would skip entry 1
        await fill(store, 1, 3, 10)
        assert await store.journal_page(before.last, 10) is None
        fresh = await page_of(store, None, 10)
        assert [e["seq"] for e in fresh.entries] == [1, 2, 3]
        assert fresh.last is not None and fresh.last[1] != before.last[1]
        assert await store.journal_page(fresh.last, 10) is not None

    async def test_a_journal_cursor_of_a_numbering_that_started_again_is_refused(
        self, store: Store, renumbered: Any
    ) -> None:
        await fill(store, 1, 3, 10)
        before = await page_of(store, None, 1)
        other: Store = await renumbered(store)  # a new memory store, another file, a wiped Redis
        await fill(other, 1, 5, 10)
        assert await other.journal_page(before.last, 10) is None
        fresh = await page_of(other, None, 10)
        assert len(fresh.entries) == 5 and fresh.last is not None
        assert before.last is not None and fresh.last[1] != before.last[1]

    async def test_the_journal_tail_is_the_newest_entries_oldest_first(self, store: Store) -> None:
        assert await store.journal_tail(3) == []
        await fill(store, 1, 10, 8)
        assert [e["i"] for e in await store.journal_tail(3)] == [8, 9, 10]
        assert [e["seq"] for e in await store.journal_tail(100)] == list(range(3, 11))

    @pytest.mark.parametrize(
        ("after", "count", "named"),
        [
            (None, 0, "count"),
            (None, True, "count"),
            (None, 1.0, "count"),
            ((1,), 1, "after"),
            ((-1, "0" * 16), 1, "after"),
            (("1", "0" * 16), 1, "after"),
            ("1.x", 1, "after"),
        ],
    )
    async def test_journal_page_arguments_are_checked(
        self, store: Store, after: object, count: object, named: str
    ) -> None:
        with pytest.raises(ValueError, match=f"^{named} must be"):
            await store.journal_page(after, count)  # type: ignore[arg-type]
        if after is None:
            with pytest.raises(ValueError, match=r"^count must be"):
                await store.journal_tail(count)  # type: ignore[arg-type]
