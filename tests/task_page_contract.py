"""What every Store backend's pages of the task listing must do (``Store.task_page``): part of
the store contract (``StoreContract``, tests/store_contract.py), so it runs on the memory,
SQLite and Redis stores, with their ``store`` and ``renumbered`` fixtures."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from emulator.stores.base import Store

from .store_support import make_task, place


class TaskPageContract:
    """The task listing's pages. Subclasses provide ``store`` and ``renumbered``."""

    # -- pages of the listing (Store.task_page) ----------------------------------------------
    async def test_pages_walk_2500_tasks_each_once_in_submission_order(self, store: Store) -> None:
        order = [(i * 7919) % 2503 for i in range(1, 2501)]  # ids not in submission order
        for i in order:
            assert await place(store, make_task(i)) == "placed"
        listed, after, pages, epochs = [], None, 0, set()
        while True:
            page = await store.task_page(after, 1000)
            assert page is not None
            pages += 1
            assert len(page.tasks) <= 1000
            listed += [t.task_id for t in page.tasks]
            after = page.last
            if not page.more:
                break
            assert after is not None
            epochs.add(after[1])
        assert listed == [make_task(i).task_id for i in order]
        assert pages == 3 and len(epochs) == 1  # one numbering all through
        assert page.tasks[-1] == await store.get_task(make_task(order[-1]).task_id)

    async def test_a_page_reads_at_most_its_count_and_says_more_follow(self, store: Store) -> None:
        for i in range(1, 6):
            await place(store, make_task(i))
        first = await store.task_page(None, 2)
        assert first is not None and first.more
        assert [t.task_id for t in first.tasks] == [make_task(i).task_id for i in (1, 2)]
        last = await store.task_page(first.last, 3)
        assert last is not None and not last.more
        assert [t.task_id for t in last.tasks] == [make_task(i).task_id for i in (3, 4, 5)]
        end = await store.task_page(last.last, 3)
        assert end is not None and (end.tasks, end.last, end.more) == ([], None, False)
        one = await store.task_page(None, 1)
        assert one is not None and one.more and len(one.tasks) == 1

    async def test_a_page_after_a_removed_task_goes_on_with_the_tasks_after_it(
        self, store: Store
    ) -> None:
        # Tasks 1-3 end at 3; 4-6 at 100: expiry removes 1-3 from between two pages.
        for i in range(1, 7):
            await place(store, make_task(i, processing_s=2.0 if i <= 3 else 99.0))
        first = await store.task_page(None, 2)
        assert first is not None and first.last is not None
        assert (await store.expire(finished_before=10.0, now=10.0)).removed == 3
        # The cursor's task is gone; numbers are never given twice, so "after it" is exact.
        listed: list[str] = []
        after: tuple[int, str] | None = first.last
        while True:
            page = await store.task_page(after, 2)
            assert page is not None
            listed += [t.task_id for t in page.tasks]
            if not page.more:
                break
            after = page.last
        assert listed == [make_task(i).task_id for i in (4, 5, 6)]
        # Removed in the middle of a walk, behind its cursor: the walk goes on unharmed.
        again = await store.task_page(None, 1)
        assert again is not None
        await store.force_end(
            dataclasses.replace(
                make_task(5, processing_s=99.0),
                schedule=make_task(5).schedule.ending_now(1.0, "succeeded"),
            ),
            11.0,
        )
        assert (await store.expire(finished_before=20.0, now=20.0)).removed == 1
        rest = await store.task_page(again.last, 10)
        assert rest is not None and [t.task_id for t in rest.tasks] == [make_task(6).task_id]

    async def test_a_page_after_an_evicted_task_lists_each_stored_task_after_it_once(
        self, store: Store
    ) -> None:
        # Distinct ends, the oldest first (eviction takes the earliest ended).
        for i in range(1, 11):
            await place(store, make_task(i, processing_s=0.1 * i), cap=10, now=5.0)
        first = await store.task_page(None, 3)
        assert first is not None and first.last is not None
        for i in range(11, 21):  # a full store evicts the oldest ended tasks, 1-3 among them
            task = make_task(i, processing_s=0.1 * i)
            assert await place(store, task, cap=10, now=5.0) == "placed"
        stored = await store.list_tasks()
        assert make_task(3).task_id not in {t.task_id for t in stored}
        following = [t.task_id for t in stored if int(t.task_id[5:], 16) > 3]
        page = await store.task_page(first.last, 100)
        assert page is not None and not page.more
        assert [t.task_id for t in page.tasks] == following

    async def test_a_position_from_before_a_reset_goes_on_with_the_new_tasks(
        self, store: Store
    ) -> None:
        for i in range(1, 4):
            await place(store, make_task(i))
        before = await store.task_page(None, 1)
        assert before is not None and before.last is not None
        await store.reset()
        for i in range(1, 4):  # the same ids again, as a seed's stream draws them after reset
            await place(store, make_task(i))
        # Numbers went on rising across the reset: every task stored now is after the cursor.
        after = await store.task_page(before.last, 10)
        assert after is not None
        assert [t.task_id for t in after.tasks] == [make_task(i).task_id for i in (1, 2, 3)]
        now = await store.task_page(None, 1)
        assert now is not None and now.last is not None and now.last[0] > before.last[0]

    async def test_a_position_of_a_numbering_that_started_again_is_refused(
        self, store: Store, renumbered: Any
    ) -> None:
        for i in range(1, 4):
            await place(store, make_task(i))
        before = await store.task_page(None, 1)
        assert before is not None and before.last is not None
        # A new memory store (a restarted emulator), another SQLite file, a wiped Redis:
        # numbers start again, so "after number n" would skip tasks. Never a page.
        other: Store = await renumbered(store)
        for i in range(1, 6):
            await place(other, make_task(i))
        assert await other.task_page(before.last, 10) is None
        fresh = await other.task_page(None, 10)
        assert fresh is not None and fresh.last is not None and fresh.last[1] != before.last[1]
        assert len(fresh.tasks) == 5
        # Its own positions are taken, and again after a retried first read.
        assert await other.task_page(fresh.last, 10) is not None

    async def test_a_task_stored_again_under_a_removed_id_is_listed_once(
        self, store: Store
    ) -> None:
        store.usage_log_limit = 0  # the removed tasks' charges leave the log: ids free again
        for i in range(1, 4):
            await place(store, make_task(i))
        await store.expire(finished_before=10.0, now=10.0)
        await place(store, make_task(4, created_at=20.0))
        await place(store, make_task(2, created_at=20.0))
        page = await store.task_page(None, 10)
        assert page is not None
        assert [t.task_id for t in page.tasks] == [make_task(i).task_id for i in (4, 2)]

    @pytest.mark.parametrize(
        ("after", "count", "named"),
        [
            (None, 0, "count"),
            (None, True, "count"),
            (None, 1.0, "count"),
            ((1,), 1, "after"),
            ((-1, "task_x"), 1, "after"),
            (("1", "task_x"), 1, "after"),
            ((1, None), 1, "after"),
            ("task_x", 1, "after"),
        ],
    )
    async def test_page_arguments_are_checked(
        self, store: Store, after: object, count: object, named: str
    ) -> None:
        with pytest.raises(ValueError, match=f"^{named} must be"):
            await store.task_page(after, count)  # type: ignore[arg-type]
