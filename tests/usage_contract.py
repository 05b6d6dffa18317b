"""What every Store backend must do for the usage log's pages and totals (`Store.charge_page`,
`Store.get_charge`, `Store.usage_sums`): part of the store contract (``StoreContract`` takes
these tests), so they run on the memory, SQLite and Redis stores.

The totals' check is the whole-list formula they replace (``usage_model.whole_list_totals``)
over every charge the test made, trimmed from the log or not: the test's own record
(`usage_model.Ledger`), never the store's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest

from emulator.stores.base import Store

from .listings import whole_usage_log
from .store_support import make_charge, make_task, place
from .usage_model import Ledger


async def walk(store: Store, count: int, between: Any = None) -> list[str]:
    """The task ids of every page from the first, ``count`` a page; ``between(n)`` is awaited
    after the n-th page (settlements, trims, holds)."""
    return [c.task_id for c in await whole_usage_log(store, count, between)]


class UsageLogContract:
    """The usage log's pages and totals. Subclasses provide ``store`` and ``renumbered``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_charge_pages_walk_2500_charges_each_once_in_hold_order(
        self, store: Store
    ) -> None:
        order = [(i * 7919) % 2503 for i in range(1, 2501)]  # ids not in hold order
        ledger = Ledger(store)
        for i in order:
            assert await ledger.place(make_task(i)) == "placed"
        listed = await walk(store, 1000)
        assert listed == [make_task(i).task_id for i in order]
        await ledger.check()

    async def test_a_walk_lists_once_every_charge_still_listed_while_others_settle_and_trim(
        self, store: Store
    ) -> None:
        store.usage_log_limit = 100
        ledger = Ledger(store)
        order = [(i * 7919) % 2503 for i in range(1, 2501)]
        ids = [make_task(i).task_id for i in order]
        for i in order:
            await ledger.place(make_task(i))
        added = [make_task(i).task_id for i in range(3000, 3010)]

        async def between(page: int) -> None:
            # Settle every third charge (those listed and those not yet): all but the newest
            # 100 finished leave the log (trimmed), behind and ahead of the cursor.
            for task_id in ids[page - 1 :: 3]:
                await ledger.settle(task_id, page % 3, float(page))
            for i in range(3000 + 5 * (page - 1), 3005 + 5 * (page - 1)):
                await ledger.place(make_task(i))

        listed = await walk(store, 1000, between)
        assert len(listed) == len(set(listed)), "a charge listed twice"
        hold_order = ids + added
        assert listed == sorted(listed, key=hold_order.index), "not in hold order"
        still = {c.task_id for c in await whole_usage_log(store)}
        first_page = set(ids[:1000])
        # Every charge listed when the walk ended, and every one the first page showed, once.
        missed = [i for i in hold_order if i in still and i not in listed]
        assert not missed and first_page <= set(listed)
        assert set(added) <= set(listed)
        await ledger.check()

    async def test_a_charge_page_reads_at_most_its_count_and_says_more_follow(
        self, store: Store
    ) -> None:
        for i in range(1, 6):
            await place(store, make_task(i))
        first = await store.charge_page(None, 2)
        assert first is not None and first.more
        assert first.charges == [make_charge(i) for i in (1, 2)]
        last = await store.charge_page(first.last, 3)
        assert last is not None and not last.more
        assert [c.task_id for c in last.charges] == [make_task(i).task_id for i in (3, 4, 5)]
        end = await store.charge_page(last.last, 3)
        assert end is not None and (end.charges, end.last, end.more) == ([], None, False)

    async def test_a_charge_keeps_its_place_after_its_task_is_evicted_or_expired(
        self, store: Store
    ) -> None:
        for i in range(1, 7):
            await place(store, make_task(i, processing_s=2.0 if i <= 3 else 99))
        first = await store.charge_page(None, 2)
        assert first is not None
        assert (await store.expire(finished_before=10.0, now=10.0)).removed == 3
        # Tasks 1-3 are gone; their (settled) charges stay in the log, numbered as held.
        rest = await store.charge_page(first.last, 10)
        assert rest is not None
        assert [(c.task_id[-1], c.state) for c in rest.charges] == [
            ("3", "settled"),
            *((str(i), "held") for i in (4, 5, 6)),
        ]
        whole = await store.charge_page(None, 10)
        assert whole is not None and [c.task_id[-1] for c in whole.charges] == list("123456")
        for i in range(7, 20):  # a full store evicts the ended tasks; their charges stay
            await place(store, make_task(i, processing_s=0.1), cap=8, now=50)
        assert len(await store.list_tasks()) < 13
        assert await walk(store, 4) == [make_task(i).task_id for i in range(1, 20)]

    async def test_a_charge_position_from_before_a_reset_goes_on_with_the_new_charges(
        self, store: Store
    ) -> None:
        ledger = Ledger(store)
        for i in range(1, 4):
            await ledger.place(make_task(i))
        before = await store.charge_page(None, 3)
        assert before is not None and before.last is not None
        await ledger.reset()
        assert await store.usage_sums() == []
        for i in range(1, 3):  # the same ids again, as a seed's stream draws them after reset
            await ledger.place(make_task(i))
        after = await store.charge_page(before.last, 10)
        assert after is not None
        assert [c.task_id[-1] for c in after.charges] == ["1", "2"]
        await ledger.check()

    async def test_a_charge_position_of_a_numbering_that_started_again_is_refused(
        self, store: Store, renumbered: Any
    ) -> None:
        for i in range(1, 4):
            await place(store, make_task(i))
        before = await store.charge_page(None, 1)
        assert before is not None and before.last is not None
        other: Store = await renumbered(store)
        for i in range(1, 6):
            await place(other, make_task(i))
        assert await other.charge_page(before.last, 10) is None
        fresh = await other.charge_page(None, 10)
        assert fresh is not None and len(fresh.charges) == 5
        assert fresh.last is not None and await other.charge_page(fresh.last, 10) is not None

    async def test_the_charge_tail_is_the_newest_charges_oldest_first(self, store: Store) -> None:
        ids = [make_task(i).task_id for i in range(1, 6)]
        assert await store.charge_tail(3) == []
        for i in range(1, 6):
            await place(store, make_task(i))
        await store.settle(ids[3], 1, 1.0)  # a settlement keeps a charge's place
        assert [c.task_id for c in await store.charge_tail(3)] == ids[2:]
        assert [c.task_id for c in await store.charge_tail(10)] == ids
        assert (await store.charge_tail(2))[0].state == "settled"
        with pytest.raises(ValueError, match=r"^count must be"):
            await store.charge_tail(0)

    async def test_a_task_listings_position_is_no_charge_position(self, store: Store) -> None:
        # Tasks and charges are numbered apart: a task cursor handed to the usage listing is
        # refused (the review found SQLite and Redis following it, into other charges).
        for i in range(1, 4):
            await place(store, make_task(i))
        tasks = await store.task_page(None, 1)
        assert tasks is not None and tasks.last is not None
        assert await store.charge_page(tasks.last, 10) is None
        charges = await store.charge_page(None, 1)
        assert charges is not None and charges.last is not None
        assert await store.task_page(charges.last, 10) is None

    @pytest.mark.parametrize(
        ("after", "count", "named"),
        [
            (None, 0, "count"),
            (None, True, "count"),
            (None, 1001.5, "count"),
            ((1,), 1, "after"),
            ((-1, "e"), 1, "after"),
            (("1", "e"), 1, "after"),
            ("1.e", 1, "after"),
        ],
    )
    async def test_charge_page_arguments_are_checked(
        self, store: Store, after: object, count: object, named: str
    ) -> None:
        with pytest.raises(ValueError, match=f"^{named} must be"):
            await store.charge_page(after, count)  # type: ignore[arg-type]

    async def test_get_charge_reads_one_listed_charge(self, store: Store) -> None:
        store.usage_log_limit = 0
        for i in (1, 2):
            await place(store, make_task(i))
        assert await store.get_charge(make_task(2).task_id) == make_charge(2)
        assert await store.get_charge("task_none") is None
        await store.settle(make_task(1).task_id, 1, 5.0)  # trimmed at once
        assert await store.get_charge(make_task(1).task_id) is None

    async def test_usage_sums_move_with_holds_settlements_balances_and_trims(
        self, store: Store
    ) -> None:
        store.usage_log_limit = 2
        ledger = Ledger(store)
        await ledger.set_balance("owner-b", "sk-b…key", 100)
        for i in range(1, 9):
            task = make_task(i, owner="owner-a" if i % 2 else "owner-b")
            assert await ledger.place(task, held=6 + i) == "placed"
            await ledger.check()
        for i, images in ((1, 0), (2, 1), (3, 2), (4, 0), (6, 2)):
            assert await ledger.settle(make_task(i).task_id, images, float(i))
            await ledger.check()
        # A refused hold (balance), a taken id, a full store: none moves a sum.
        before = sorted(await store.usage_sums(), key=repr)
        task = make_task(20, owner="owner-b")
        assert await ledger.place(task, held=10**6) == "refused"
        assert await ledger.place(make_task(8)) == "taken"
        running = make_task(21, processing_s=10**6)
        assert await ledger.place(running, cap=1, now=0.0) == "full"
        assert sorted(await store.usage_sums(), key=repr) == before
        assert await ledger.settle_due(10**4) == 3
        await ledger.check()
        sums = await store.usage_sums()
        assert sum(s.tasks for s in sums) == 8 and sum(s.held for s in sums) == 0
        assert {s.state for s in sums if s.tasks} == {"settled", "released"}

    async def test_every_field_of_the_sums_is_kept(self, store: Store) -> None:
        charge = dataclasses.replace(make_charge(1, held=8), unit_price=3)
        await store.set_balance("owner-a", "sk-a…key", 100)
        task = make_task(1)
        assert await store.insert_held(task, charge, None, cap=0, now=0.0) == "placed"
        (held,) = await store.usage_sums()
        assert (held.state, held.tasks, held.held, held.taken, held.images) == ("held", 1, 8, 8, 0)
        await store.settle(task.task_id, 2, 3.0)
        rows = {s.state: s for s in await store.usage_sums()}
        assert (rows["held"].tasks, rows["held"].held, rows["held"].taken) == (0, 0, 0)
        settled = rows["settled"]
        assert (settled.tasks, settled.images, settled.paid) == (1, 2, 6)
        assert (settled.taken, settled.refunded, settled.held) == (8, 2, 0)
        assert (settled.owner, settled.key, settled.model) == ("owner-a", "sk-a…key", "gpt-image-2")
