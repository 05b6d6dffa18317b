"""What every Store backend must do with balances and charges: holds, settlements, refunds and
the usage log's trimming. Part of the store contract (``StoreContract``,
tests/store_contract.py), so it runs on the memory, SQLite and Redis stores."""

from __future__ import annotations

from emulator.stores.base import Store

from .listings import whole_usage_log
from .store_support import gather, make_charge, make_task, place, state_of


class BillingContract:
    """Balances, holds and settlements. Subclasses provide ``store``."""

    # -- billing -------------------------------------------------------------------------
    async def test_a_hold_without_a_balance_takes_nothing(self, store: Store) -> None:
        assert await place(store, make_task(1)) == "placed"
        assert await whole_usage_log(store) == [make_charge(1)]  # taken 0
        assert await store.list_balances() == {}

    async def test_a_hold_takes_from_the_balance_and_never_overspends(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 10)
        assert await place(store, make_task(1), held=6, blob=b"ref") == "placed"
        assert await place(store, make_task(2), held=6, blob=b"ref") == "refused"
        assert await store.list_balances() == {"owner-a": ("sk-a…", 4)}
        assert state_of(await whole_usage_log(store)) == [("01", "held", 0, 0, 6, 0)]
        # A refused submission leaves nothing behind.
        assert await store.get_task(make_task(2).task_id) is None
        assert await store.get_blob(f"ref:{make_task(2).task_id}") is None

    async def test_concurrent_submissions_never_overspend(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 20)
        placed = await gather(*(place(store, make_task(i), held=6) for i in range(20)))
        assert placed.count("placed") == 3
        assert await store.list_balances() == {"owner-a": ("sk-a…", 2)}
        assert len(await whole_usage_log(store)) == len(await store.list_tasks()) == 3

    async def test_settle_pays_for_the_images_and_gives_back_the_rest_once(
        self, store: Store
    ) -> None:
        await store.set_balance("owner-a", "sk-a…", 10)
        await place(store, make_task(1), held=6)
        assert await store.settle(make_task(1).task_id, 1, 9.5)
        assert not await store.settle(make_task(1).task_id, 0, 9.5)
        assert await store.list_balances() == {"owner-a": ("sk-a…", 7)}
        (charge,) = await whole_usage_log(store)
        assert (charge.state, charge.images, charge.amount, charge.settled_at) == (
            "settled",
            1,
            3,
            9.5,
        )
        assert (charge.taken, charge.refunded) == (6, 3)
        assert not await store.settle("task_unknown", 1, 1.0)

    async def test_a_refund_never_exceeds_what_was_taken(self, store: Store) -> None:
        await place(store, make_task(1), held=6)  # unlimited: nothing taken
        await store.set_balance("owner-a", "sk-a…", 50)
        assert await store.settle(make_task(1).task_id, 0, 3.0)
        assert await store.list_balances() == {"owner-a": ("sk-a…", 50)}
        assert state_of(await whole_usage_log(store)) == [("01", "released", 0, 0, 0, 0)]

    async def test_a_refund_goes_only_to_a_balance_that_still_exists(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 10)
        await place(store, make_task(1), held=6)
        await store.set_balance("owner-a", "sk-a…", None)
        assert await store.settle(make_task(1).task_id, 0, 3.0)
        assert await store.list_balances() == {}
        assert state_of(await whole_usage_log(store)) == [("01", "released", 0, 0, 6, 0)]

    async def test_concurrent_settles_give_back_once(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 6)
        await place(store, make_task(1), held=6)
        done = await gather(*(store.settle(make_task(1).task_id, 0, 1.0) for _ in range(10)))
        assert done.count(True) == 1
        assert await store.list_balances() == {"owner-a": ("sk-a…", 6)}

    async def test_settle_due_settles_exactly_the_tasks_that_ended(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 100)
        timed = [make_task(i, created_at=float(i)) for i in (1, 2, 3)]  # end at 4, 5, 6
        polled = make_task(4, steps=1)
        for task in [*timed, polled]:
            await place(store, task, held=6)
        assert await store.settle_due(5.0) == 2
        assert await store.settle_due(5.0) == 0
        assert [c.state for c in await whole_usage_log(store)] == ["settled"] * 2 + ["held"] * 2
        await store.count_poll(polled.task_id, now=5.5)  # its one step: it ends
        assert await store.settle_due(5.5) == 1
        (last,) = [c for c in await whole_usage_log(store) if c.task_id == polled.task_id]
        assert (last.state, last.settled_at) == ("settled", 5.5)
        assert await store.list_balances() == {"owner-a": ("sk-a…", 100 - 3 * 6 - 6)}

    async def test_a_balance_change_first_settles_what_ended(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 10)
        await place(store, make_task(1), held=6)  # ends at 3: returns 2 images, pays all
        await store.set_balance("owner-a", "sk-a…", 1, now=5.0)
        assert state_of(await whole_usage_log(store)) == [("01", "settled", 2, 6, 6, 0)]
        assert await store.list_balances() == {"owner-a": ("sk-a…", 1)}

    async def test_charges_are_listed_in_hold_order_with_their_owners(self, store: Store) -> None:
        for i, owner in [(3, "a"), (1, "b"), (2, "a")]:
            await place(store, make_task(i, owner=owner))
        assert await whole_usage_log(store) == [
            make_charge(i, owner=owner) for i, owner in [(3, "a"), (1, "b"), (2, "a")]
        ]

    async def test_a_balance_can_be_changed_and_removed(self, store: Store) -> None:
        await store.set_balance("a", "sk-a…", 1)
        await store.set_balance("b", "sk-b…", 2)
        await store.set_balance("a", "sk-A…", 7)
        assert await store.list_balances() == {"a": ("sk-A…", 7), "b": ("sk-b…", 2)}
        await store.set_balance("a", "sk-A…", None)
        assert await store.list_balances() == {"b": ("sk-b…", 2)}
        assert await place(store, make_task(1, owner="a"), held=1000) == "placed"  # unlimited

    async def test_a_new_owner_gets_a_balance_only_below_the_bound(self, store: Store) -> None:
        assert await store.set_balance("a", "sk-a…", 1, most=2) is True
        assert await store.set_balance("b", "sk-b…", 2, most=2) is True
        # A third owner is refused and nothing changes; the two may still change theirs.
        assert await store.set_balance("c", "sk-c…", 3, most=2) is False
        assert await store.set_balance("a", "sk-A…", 9, most=2) is True
        assert await store.list_balances() == {"a": ("sk-A…", 9), "b": ("sk-b…", 2)}
        # Removing one (allowed at the bound) makes room; 0 means no bound.
        assert await store.set_balance("c", "sk-c…", None, most=2) is True
        assert await store.set_balance("b", "sk-b…", None, most=2) is True
        assert await store.set_balance("c", "sk-c…", 3, most=2) is True
        assert await store.set_balance("d", "sk-d…", 4) is True
        assert await store.list_balances() == {
            "a": ("sk-A…", 9),
            "c": ("sk-c…", 3),
            "d": ("sk-d…", 4),
        }

    async def test_the_usage_log_keeps_the_newest_finished_and_sums_the_rest(
        self, store: Store
    ) -> None:
        store.usage_log_limit = 2
        for i in range(1, 6):
            await place(store, make_task(i, owner="owner-a" if i % 2 else "owner-b"))
        for i in (4, 1, 5, 2):  # settlement order
            assert await store.settle(make_task(i).task_id, i % 2, float(i))
        listed = [c.task_id[-1] for c in await whole_usage_log(store)]
        assert listed == ["2", "3", "5"]  # in hold order: the held one and the newest two
        # The trimmed ones (4, released; 1, settled) still count, each field of them.
        sums = {(s.owner, s.state): s for s in await store.usage_sums() if s.tasks}
        assert set(sums) == {("owner-a", "held"), ("owner-a", "settled"), ("owner-b", "released")}
        b, a = sums["owner-b", "released"], sums["owner-a", "settled"]
        assert (b.key, b.model, b.tasks, b.images, b.paid) == ("sk-b…key", "gpt-image-2", 2, 0, 0)
        assert (a.tasks, a.images, a.paid, a.taken, a.refunded, a.held) == (2, 2, 6, 0, 0, 0)
