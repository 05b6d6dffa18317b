"""What every Store backend must do with tasks: storing, polling, listing and forcing an end.
Part of the store contract (``StoreContract``, tests/store_contract.py), so it runs on the
memory, SQLite and Redis stores."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.stores.base import Store

from .listings import whole_usage_log
from .store_support import gather, make_task, place


class TaskContract:
    """Tasks stored, polled, listed and forced to end. Subclasses provide ``store``."""

    # -- tasks ---------------------------------------------------------------------------
    async def test_task_round_trips_exactly(self, store: Store) -> None:
        task = make_task(1, created_at=1700000000.123456)
        assert await place(store, task) == "placed"
        assert await store.get_task(task.task_id) == task
        assert await store.get_task("task_missing") is None

    async def test_a_taken_id_is_refused_and_the_first_kept_with_its_charge(
        self, store: Store
    ) -> None:
        await store.set_balance("owner-a", "sk-a…", 10)
        first = make_task(1)
        assert await place(store, first) == "placed"
        assert await place(store, dataclasses.replace(first, prompt="other")) == "taken"
        assert await store.get_task(first.task_id) == first
        assert await store.list_balances() == {"owner-a": ("sk-a…", 4)}
        assert len(await whole_usage_log(store)) == 1

    async def test_concurrent_submissions_of_one_id_let_exactly_one_win(self, store: Store) -> None:
        tasks = [dataclasses.replace(make_task(1), prompt=f"p{i}") for i in range(20)]
        won = await gather(*(place(store, t) for t in tasks))
        assert won.count("placed") == 1 and won.count("taken") == 19
        assert await store.get_task(tasks[0].task_id) == tasks[won.index("placed")]

    async def test_count_poll_adds_one_and_returns_the_updated_task(self, store: Store) -> None:
        task = make_task(1)
        await place(store, task)
        polled = await store.count_poll(task.task_id)
        assert polled == dataclasses.replace(task, polls=1)
        assert await store.get_task(task.task_id) == polled
        assert await store.count_poll("task_missing") is None

    async def test_count_poll_counts_only_the_owners_polls(self, store: Store) -> None:
        task = make_task(1, owner="owner-a")
        await place(store, task)
        assert await store.count_poll(task.task_id, "owner-b") is None
        polled = await store.count_poll(task.task_id, "owner-a")
        assert polled == dataclasses.replace(task, polls=1)
        assert await store.get_task(task.task_id) == polled

    async def test_concurrent_polls_are_each_counted_once(self, store: Store) -> None:
        task = make_task(1)
        await place(store, task)
        polled = await gather(*(store.count_poll(task.task_id) for _ in range(30)))
        assert sorted(t.polls for t in polled) == list(range(1, 31))
        stored = await store.get_task(task.task_id)
        assert stored is not None and stored.polls == 30

    async def test_the_poll_that_ends_a_per_poll_task_records_when_once(self, store: Store) -> None:
        task = make_task(1, steps=3)  # ends at its third poll
        await place(store, task)
        seen = [await store.count_poll(task.task_id, now=float(t)) for t in (10, 20, 30, 40)]
        assert [t.finished_at for t in seen if t is not None] == [None, None, 30.0, 30.0]
        assert await store.get_task(task.task_id) == dataclasses.replace(
            task, polls=4, finished_at=30.0
        )

    async def test_list_is_in_submission_order_and_filters_by_owner(self, store: Store) -> None:
        for i, owner in [(5, "a"), (3, "b"), (9, "a"), (1, "b")]:
            await place(store, make_task(i, owner=owner))
        ids = [t.task_id for t in await store.list_tasks()]
        assert ids == [make_task(i).task_id for i in (5, 3, 9, 1)]
        assert [t.task_id for t in await store.list_tasks("b")] == [
            make_task(i).task_id for i in (3, 1)
        ]
        assert await store.list_tasks("nobody") == []

    async def test_newest_lists_the_last_tasks_in_submission_order_and_count_counts_all(
        self, store: Store
    ) -> None:
        order = [(5, "a"), (3, "b"), (9, "a"), (1, "b"), (7, "a")]
        for i, owner in order:
            await place(store, make_task(i, owner=owner))
        ids = [make_task(i).task_id for i, _ in order]
        assert await store.count_tasks() == 5
        assert [t.task_id for t in await store.list_tasks(newest=2)] == ids[-2:]
        assert [t.task_id for t in await store.list_tasks(newest=5)] == ids
        assert [t.task_id for t in await store.list_tasks(newest=50)] == ids
        assert await store.list_tasks(newest=0) == []
        # One owner's newest: the last of that owner's tasks, not that owner's among the last.
        a_ids = [make_task(i).task_id for i, owner in order if owner == "a"]
        assert [t.task_id for t in await store.list_tasks("a", newest=2)] == a_ids[-2:]
        assert await store.list_tasks(newest=1) == [await store.get_task(ids[-1])]

    @pytest.mark.parametrize("newest", [-1, -5, True, 2.0, "3"])
    async def test_newest_must_be_an_integer_of_at_least_zero(
        self, store: Store, newest: object
    ) -> None:
        await place(store, make_task(1))
        with pytest.raises(ValueError, match="newest must be None or an integer >= 0"):
            await store.list_tasks(newest=newest)  # type: ignore[arg-type]

    # -- forced outcomes ---------------------------------------------------------------------
    async def test_force_end_ends_a_running_task_and_keeps_its_polls(self, store: Store) -> None:
        task = make_task(1)
        await place(store, task)
        await store.count_poll(task.task_id)
        schedule = task.schedule.ending_now(0.5, "failed", "content_policy_violation", "no")
        forced = await store.force_end(dataclasses.replace(task, schedule=schedule), 0.5)
        assert forced == dataclasses.replace(task, schedule=schedule, polls=1)
        assert await store.get_task(task.task_id) == forced
        # Terminal states are final: a second force finds it ended.
        again = task.schedule.ending_now(0.6, "succeeded")
        assert await store.force_end(dataclasses.replace(task, schedule=again), 0.6) == "ended"
        assert await store.force_end(make_task(9), 0.0) == "missing"

    async def test_force_end_refuses_a_task_that_ended_by_its_own_clock(self, store: Store) -> None:
        timed, polled = make_task(1), make_task(2, steps=2)
        await place(store, timed)
        await place(store, polled)
        late = timed.schedule.ending_now(2.0, "failed")
        assert await store.force_end(dataclasses.replace(timed, schedule=late), 3.0) == "ended"
        for _ in range(2):
            await store.count_poll(polled.task_id, now=1.0)
        early = polled.schedule.ending_now(0.0, "failed")
        assert await store.force_end(dataclasses.replace(polled, schedule=early), 1.0) == "ended"
        assert (await store.get_task(timed.task_id)) == timed
