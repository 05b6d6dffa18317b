"""What every Store backend must do when it is full, and when tasks expire: eviction within its
bound, refusal, expiry with settlement. Part of the store contract (``StoreContract``,
tests/store_contract.py), so it runs on the memory, SQLite and Redis stores."""

from __future__ import annotations

import pytest

from emulator.stores.base import Store

from .listings import whole_usage_log
from .store_support import gather, make_task, place


class CapacityContract:
    """The task cap, eviction and expiry. Subclasses provide ``store``."""

    # -- the cap and expiry --------------------------------------------------------------------
    async def test_a_full_store_of_unfinished_tasks_refuses_and_changes_nothing(
        self, store: Store
    ) -> None:
        await store.set_balance("owner-a", "sk-a…", 100)
        for i in range(3):
            await place(store, make_task(i, created_at=10.0), cap=3)  # all end at 13
        assert await place(store, make_task(9), cap=3, now=12.9) == "full"
        assert len(await store.list_tasks()) == 3
        assert await store.list_balances() == {"owner-a": ("sk-a…", 100 - 3 * 6)}

    async def test_a_full_store_evicts_the_earliest_ended_and_settles_them(
        self, store: Store
    ) -> None:
        await store.set_balance("owner-a", "sk-a…", 100)
        # Ends: 1 at 18, 2 at 8, 3 at 13, 4 at 103 (running); a per_poll task never polled.
        for i, created in [(1, 15.0), (2, 5.0), (3, 10.0), (4, 100.0)]:
            await place(store, make_task(i, created_at=created), blob=b"ref")
        await place(store, make_task(5, steps=1), blob=b"ref")
        # Full at 5: evicts down to 4 (a tenth, at least one, below the cap), ended first.
        assert await place(store, make_task(6, created_at=20.0), cap=5, now=20.0) == "placed"
        assert [t.task_id[-1] for t in await store.list_tasks()] == ["1", "3", "4", "5", "6"]
        assert await store.get_blob(f"ref:{make_task(2).task_id}") is None
        charges = {c.task_id[-1]: c.state for c in await whole_usage_log(store)}
        assert charges["2"] == "settled" and charges["5"] == "held"

    @pytest.mark.parametrize("store", [{"evict_at_most": 7}], ids=["bound7"], indirect=True)
    async def test_a_full_store_evicts_never_more_than_the_bound_it_was_built_with(
        self, store: Store
    ) -> None:
        # A tenth of this cap (11) is more than the bound (7): a store that ignored its bound
        # (the default's 1,000, or a tenth of the cap alone) would evict 11.
        cap = 110
        for i in range(cap):
            assert await place(store, make_task(i), cap=cap) == "placed"  # all end at 3
        assert await place(store, make_task(cap), cap=cap, now=5.0) == "placed"
        kept = [t.task_id for t in await store.list_tasks()]
        assert len(kept) == cap - 7 + 1
        assert kept == [make_task(i).task_id for i in range(7, cap + 1)]

    @pytest.mark.parametrize("store", [{"evict_at_most": 7}], ids=["bound7"], indirect=True)
    async def test_a_full_store_evicts_a_tenth_of_its_cap_when_that_is_below_its_bound(
        self, store: Store
    ) -> None:
        cap = 60  # a tenth: 6, below the bound (7); a store evicting its bound would take 7
        for i in range(cap):
            assert await place(store, make_task(i), cap=cap) == "placed"  # all end at 3
        assert await place(store, make_task(cap), cap=cap, now=5.0) == "placed"
        kept = [t.task_id for t in await store.list_tasks()]
        assert kept == [make_task(i).task_id for i in range(6, cap + 1)]

    @pytest.mark.parametrize("store", [{"evict_at_most": 7}], ids=["bound7"], indirect=True)
    async def test_a_store_above_a_lowered_cap_sheds_its_bound_a_step_until_below_it(
        self, store: Store
    ) -> None:
        # 30 ended tasks stored with no cap, then a cap of 10 (as a lowered max_tasks): each
        # submission evicts 7 and is refused while 10 or more remain. Evicting all the excess
        # at once (21 here; 99,100 for 100,000 under a new cap of 1,000) would hold the store
        # for as long as that takes.
        for i in range(30):
            assert await place(store, make_task(i)) == "placed"  # all end at 3
        placed = [await place(store, make_task(100 + i), cap=10, now=5.0) for i in range(3)]
        assert placed == ["full", "full", "placed"]
        kept = [t.task_id for t in await store.list_tasks()]
        assert kept == [make_task(i).task_id for i in (*range(21, 30), 102)]
        assert await store.count_tasks() == 10

    async def test_concurrent_submissions_never_exceed_the_cap(self, store: Store) -> None:
        placed = await gather(*(place(store, make_task(i), cap=7) for i in range(30)))
        assert (placed.count("placed"), placed.count("full")) == (7, 23)
        assert len(await store.list_tasks()) == len(await whole_usage_log(store)) == 7

    async def test_expire_removes_what_ended_long_enough_ago_and_settles_it(
        self, store: Store
    ) -> None:
        await store.set_balance("owner-a", "sk-a…", 100)
        # Ends: task 1 at 3, task 2 at 13, task 3 (still running at 14) at 23.
        for i, created in [(1, 0.0), (2, 10.0), (3, 20.0)]:
            await place(store, make_task(i, created_at=created), blob=b"ref")
        await place(store, make_task(4, steps=1))  # per_poll, never polled: never ends
        expiry = await store.expire(finished_before=5.0, now=14.0)
        assert (expiry.removed, expiry.remaining) == (1, 3)
        assert await store.get_task(make_task(1).task_id) is None
        assert await store.get_blob(f"ref:{make_task(1).task_id}") is None
        assert await store.get_blob(f"ref:{make_task(2).task_id}") == b"ref"
        # The removed task's charge was settled in the same step: nothing stays held.
        states = {c.task_id[-1]: c.state for c in await whole_usage_log(store)}
        assert states == {"1": "settled", "2": "held", "3": "held", "4": "held"}
        expiry = await store.expire(finished_before=1e9, now=1e9)
        assert (expiry.removed, expiry.remaining) == (2, 1)
