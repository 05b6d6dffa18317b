"""What every Store backend must do, whatever it keeps state in.

Subclass ``StoreContract`` and provide a ``store`` fixture that yields a fresh, empty store (an
async fixture is fine: the tests run under anyio). The tests talk only to the ``Store``
interface, so a backend passes them exactly when it behaves like ``MemoryStore``; the
concurrency tests make many calls at once, which proves atomicity on a backend shared by
several connections (on one process they at least pin down the counting).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import anyio
import pytest

from emulator.billing import Charge
from emulator.faults import Effect, FaultRule, Match
from emulator.store import Store
from emulator.tasks import Schedule, Task


def make_task(
    number: int,
    *,
    owner: str = "owner-a",
    created_at: float = 0.0,
    queued_s: float = 1.0,
    processing_s: float = 2.0,
) -> Task:
    """A plausible task whose schedule ends at ``created_at + queued_s + processing_s``."""
    return Task(
        task_id=f"task_{number:032x}",
        owner=owner,
        created_at=created_at,
        task_type="image2image",
        model="gpt-image-2",
        prompt="a blue glass sphere ✨",
        width=1024,
        height=768,
        output_format="webp",
        n=2,
        quality="low",
        tier="1K",
        aspect_ratio=None,
        size="1024x768",
        references=("https://example.com/a.png", "data:image/png;base64,…"),
        has_reference=True,
        seed=2**62 + number,
        schedule=Schedule(queued_s=queued_s, processing_s=processing_s, images=2),
    )


def make_charge(number: int, *, owner: str = "owner-a", held: int = 3) -> Charge:
    return Charge(
        task_id=f"task_{number:032x}",
        owner=owner,
        key="sk-t…key",
        time=1.5,
        model="gpt-image-2",
        tier="1K",
        quality="low",
        n=1,
        unit_price=held,
        held=held,
    )


def make_rule(rule_id: str, times: int | None = None) -> FaultRule:
    return FaultRule(
        id=rule_id,
        effect=Effect("http_error", code="rate_limited", status=429, retry_after=2),
        match=Match(endpoint="submit", prompt_contains="cat", headers={"x-test": "1"}),
        probability=0.5,
        times=times,
    )


async def gather(*calls: Any) -> list[Any]:
    """Run awaitables concurrently; their results in order."""
    results: list[Any] = [None] * len(calls)

    async def run(i: int, call: Any) -> None:
        results[i] = await call

    async with anyio.create_task_group() as group:
        for i, call in enumerate(calls):
            group.start_soon(run, i, call)
    return results


class StoreContract:
    """The Store interface's semantics. Subclasses provide the ``store`` fixture."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    # -- tasks ---------------------------------------------------------------------------
    async def test_task_round_trips_exactly(self, store: Store) -> None:
        task = make_task(1, created_at=1700000000.123456)
        assert await store.insert_task(task)
        assert await store.get_task(task.task_id) == task
        assert await store.get_task("task_missing") is None

    async def test_insert_refuses_a_taken_id_and_keeps_the_first(self, store: Store) -> None:
        first = make_task(1)
        assert await store.insert_task(first)
        assert not await store.insert_task(dataclasses.replace(first, prompt="other"))
        assert await store.get_task(first.task_id) == first

    async def test_concurrent_inserts_of_one_id_let_exactly_one_win(self, store: Store) -> None:
        tasks = [dataclasses.replace(make_task(1), prompt=f"p{i}") for i in range(20)]
        won = await gather(*(store.insert_task(t) for t in tasks))
        assert won.count(True) == 1
        assert await store.get_task(tasks[0].task_id) == tasks[won.index(True)]

    async def test_count_poll_adds_one_and_returns_the_updated_task(self, store: Store) -> None:
        task = make_task(1)
        await store.insert_task(task)
        polled = await store.count_poll(task.task_id)
        assert polled == dataclasses.replace(task, polls=1)
        assert await store.get_task(task.task_id) == polled
        assert await store.count_poll("task_missing") is None

    async def test_count_poll_counts_only_the_owners_polls(self, store: Store) -> None:
        task = make_task(1, owner="owner-a")
        await store.insert_task(task)
        assert await store.count_poll(task.task_id, "owner-b") is None
        polled = await store.count_poll(task.task_id, "owner-a")
        assert polled == dataclasses.replace(task, polls=1)
        assert await store.get_task(task.task_id) == polled

    async def test_concurrent_polls_are_each_counted_once(self, store: Store) -> None:
        task = make_task(1)
        await store.insert_task(task)
        polled = await gather(*(store.count_poll(task.task_id) for _ in range(30)))
        assert sorted(t.polls for t in polled) == list(range(1, 31))
        stored = await store.get_task(task.task_id)
        assert stored is not None and stored.polls == 30

    async def test_replace_overwrites_in_place_and_refuses_unknown(self, store: Store) -> None:
        for i in (1, 2, 3):
            await store.insert_task(make_task(i))
        ended = dataclasses.replace(
            make_task(2),
            schedule=make_task(2).schedule.ending_now(0.5, "failed", "content_policy_violation"),
        )
        assert await store.replace_task(ended)
        assert await store.get_task(ended.task_id) == ended
        assert [t.task_id for t in await store.list_tasks()] == [
            make_task(i).task_id for i in (1, 2, 3)
        ]
        assert not await store.replace_task(make_task(9))
        assert await store.get_task(make_task(9).task_id) is None

    async def test_remove_forgets_the_task_and_its_reference_blob(self, store: Store) -> None:
        task = make_task(1)
        await store.insert_task(task)
        await store.put_blob(f"ref:{task.task_id}", b"\x89PNG")
        await store.put_blob("other", b"kept")
        assert await store.remove_task(task.task_id)
        assert await store.get_task(task.task_id) is None
        assert await store.get_blob(f"ref:{task.task_id}") is None
        assert await store.get_blob("other") == b"kept"
        assert not await store.remove_task(task.task_id)

    async def test_list_is_in_submission_order_and_filters_by_owner(self, store: Store) -> None:
        for i, owner in [(5, "a"), (3, "b"), (9, "a"), (1, "b")]:
            await store.insert_task(make_task(i, owner=owner))
        ids = [t.task_id for t in await store.list_tasks()]
        assert ids == [make_task(i).task_id for i in (5, 3, 9, 1)]
        assert [t.task_id for t in await store.list_tasks("b")] == [
            make_task(i).task_id for i in (3, 1)
        ]
        assert await store.list_tasks("nobody") == []

    # -- blobs and clock -----------------------------------------------------------------
    async def test_blobs_keep_any_bytes_and_can_be_overwritten(self, store: Store) -> None:
        data = bytes(range(256)) * 10
        await store.put_blob("k", data)
        assert await store.get_blob("k") == data
        await store.put_blob("k", b"")
        assert await store.get_blob("k") == b""
        assert await store.get_blob("missing") is None

    async def test_clock_starts_at_zero_and_concurrent_advances_add_up(self, store: Store) -> None:
        assert await store.clock_now() == 0.0
        assert await store.advance_clock(2.5) == 2.5
        await gather(*(store.advance_clock(0.5) for _ in range(20)))
        assert await store.clock_now() == 12.5

    # -- fault rules ---------------------------------------------------------------------
    async def test_fault_rules_round_trip_in_order(self, store: Store) -> None:
        rules = [make_rule("b", times=3), make_rule("a"), make_rule("c", times=1)]
        for rule in rules:
            await store.add_fault(rule)
        assert await store.list_faults() == rules
        assert await store.fault_hits() == {"b": 0, "a": 0, "c": 0}

    async def test_adding_a_rule_again_moves_it_last_and_zeroes_its_hits(
        self, store: Store
    ) -> None:
        await store.add_fault(make_rule("a", times=5))
        await store.add_fault(make_rule("b"))
        assert await store.claim_fault("a", 5)
        assert await store.count_fault_evaluation("a") == 1
        await store.add_fault(make_rule("a", times=2))
        assert [r.id for r in await store.list_faults()] == ["b", "a"]
        assert (await store.fault_hits())["a"] == 0
        assert await store.count_fault_evaluation("a") == 1

    async def test_remove_and_clear_forget_rules_and_counters(self, store: Store) -> None:
        await store.add_fault(make_rule("a"))
        await store.add_fault(make_rule("b"))
        await store.claim_fault("a", None)
        assert await store.remove_fault("a")
        assert not await store.remove_fault("a")
        assert [r.id for r in await store.list_faults()] == ["b"]
        assert "a" not in await store.fault_hits()
        await store.clear_faults()
        assert await store.list_faults() == []
        assert await store.fault_hits() == {}

    async def test_evaluations_count_from_one(self, store: Store) -> None:
        await store.add_fault(make_rule("a"))
        assert [await store.count_fault_evaluation("a") for _ in range(3)] == [1, 2, 3]

    async def test_claims_stop_at_times_even_when_concurrent(self, store: Store) -> None:
        await store.add_fault(make_rule("a", times=3))
        taken = await gather(*(store.claim_fault("a", 3) for _ in range(25)))
        assert taken.count(True) == 3
        assert not await store.claim_fault("a", 3)
        assert (await store.fault_hits())["a"] == 3

    async def test_claims_without_times_never_run_out(self, store: Store) -> None:
        await store.add_fault(make_rule("a"))
        assert all(await gather(*(store.claim_fault("a", None) for _ in range(25))))
        assert (await store.fault_hits())["a"] == 25

    # -- journal -------------------------------------------------------------------------
    async def test_journal_keeps_the_newest_entries_with_rising_numbers(self, store: Store) -> None:
        seqs = [await store.append_journal({"path": f"/p{i}", "status": 200}, 3) for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        entries = await store.list_journal()
        assert [e["path"] for e in entries] == ["/p2", "/p3", "/p4"]
        assert entries[0] == {"path": "/p2", "status": 200, "seq": 3}

    async def test_journal_entries_keep_nested_data(self, store: Store) -> None:
        entry = {"headers": {"a": "b"}, "body": {"fields": {"n": 2}, "files": []}, "x": None}
        await store.append_journal(entry, 10)
        assert (await store.list_journal())[0] == entry | {"seq": 1}

    async def test_clearing_the_journal_keeps_numbering_and_reset_restarts_it(
        self, store: Store
    ) -> None:
        await store.append_journal({"i": 1}, 10)
        await store.clear_journal()
        assert await store.list_journal() == []
        assert await store.append_journal({"i": 2}, 10) == 2
        await store.reset()
        assert await store.append_journal({"i": 3}, 10) == 1

    # -- billing -------------------------------------------------------------------------
    async def test_hold_without_a_balance_records_the_charge(self, store: Store) -> None:
        charge = make_charge(1)
        assert await store.hold(charge)
        assert await store.list_charges() == [charge]
        assert await store.list_balances() == {}

    async def test_hold_deducts_and_refuses_to_overspend(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 5)
        assert await store.hold(make_charge(1, held=3))
        assert not await store.hold(make_charge(2, held=3))
        assert await store.list_balances() == {"owner-a": ("sk-a…", 2)}
        assert [c.task_id for c in await store.list_charges()] == [make_charge(1).task_id]

    async def test_concurrent_holds_never_overspend(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 10)
        held = await gather(*(store.hold(make_charge(i, held=3)) for i in range(20)))
        assert held.count(True) == 3
        assert await store.list_balances() == {"owner-a": ("sk-a…", 1)}
        assert len(await store.list_charges()) == 3

    async def test_settle_gives_back_the_unpaid_part_once(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 10)
        await store.hold(make_charge(1, held=6))
        assert await store.settle(make_charge(1).task_id, "settled", 1, 2, 9.5)
        assert not await store.settle(make_charge(1).task_id, "released", 0, 0, 9.5)
        assert await store.list_balances() == {"owner-a": ("sk-a…", 8)}
        (charge,) = await store.list_charges()
        assert (charge.state, charge.images, charge.amount, charge.settled_at) == (
            "settled",
            1,
            2,
            9.5,
        )
        assert not await store.settle("task_unknown", "settled", 1, 1, 1.0)

    async def test_concurrent_settles_give_back_once(self, store: Store) -> None:
        await store.set_balance("owner-a", "sk-a…", 6)
        await store.hold(make_charge(1, held=6))
        done = await gather(
            *(store.settle(make_charge(1).task_id, "released", 0, 0, 1.0) for _ in range(10))
        )
        assert done.count(True) == 1
        assert await store.list_balances() == {"owner-a": ("sk-a…", 6)}

    async def test_charges_are_listed_in_order_and_by_owner(self, store: Store) -> None:
        for i, owner in [(3, "a"), (1, "b"), (2, "a")]:
            await store.hold(make_charge(i, owner=owner))
        assert [c.task_id for c in await store.list_charges()] == [
            make_charge(i).task_id for i in (3, 1, 2)
        ]
        assert [c.task_id for c in await store.list_charges("a")] == [
            make_charge(i).task_id for i in (3, 2)
        ]

    async def test_a_balance_can_be_changed_and_removed(self, store: Store) -> None:
        await store.set_balance("a", "sk-a…", 1)
        await store.set_balance("b", "sk-b…", 2)
        await store.set_balance("a", "sk-A…", 7)
        assert await store.list_balances() == {"a": ("sk-A…", 7), "b": ("sk-b…", 2)}
        await store.set_balance("a", "sk-A…", None)
        assert await store.list_balances() == {"b": ("sk-b…", 2)}
        assert await store.hold(make_charge(1, owner="a", held=1000))  # unlimited again

    # -- reset ---------------------------------------------------------------------------
    async def test_reset_forgets_everything(self, store: Store) -> None:
        await store.insert_task(make_task(1))
        await store.put_blob(f"ref:{make_task(1).task_id}", b"x")
        await store.advance_clock(5)
        await store.add_fault(make_rule("a"))
        await store.claim_fault("a", None)
        await store.append_journal({"i": 1}, 10)
        await store.set_balance("owner-a", "sk-a…", 10)
        await store.hold(make_charge(1))
        await store.reset()
        assert await store.list_tasks() == []
        assert await store.get_blob(f"ref:{make_task(1).task_id}") is None
        assert await store.clock_now() == 0.0
        assert (await store.list_faults(), await store.fault_hits()) == ([], {})
        assert await store.list_journal() == []
        assert (await store.list_charges(), await store.list_balances()) == ([], {})
        assert await store.insert_task(make_task(1))  # usable again

    # -- bounded size ----------------------------------------------------------------------
    async def test_expire_removes_tasks_ended_long_enough_ago_with_blobs(
        self, store: Store
    ) -> None:
        # Ends: task 1 at 3, task 2 at 13, task 3 (still running at 14) at 23.
        for i, created in [(1, 0.0), (2, 10.0), (3, 20.0)]:
            await store.insert_task(make_task(i, created_at=created))
            await store.put_blob(f"ref:{make_task(i).task_id}", b"ref")
        await store.hold(make_charge(1))
        expiry = await store.expire(finished_before=5.0, now=14.0, keep=None)
        assert [t.task_id for t in expiry.removed] == [make_task(1).task_id]
        assert expiry.removed[0] == make_task(1, created_at=0.0)
        assert expiry.remaining == 2
        assert await store.get_blob(f"ref:{make_task(1).task_id}") is None
        assert await store.get_blob(f"ref:{make_task(2).task_id}") == b"ref"
        assert len(await store.list_charges()) == 1  # the usage log keeps every charge

    async def test_expire_over_the_cap_evicts_earliest_ended_first(self, store: Store) -> None:
        # Ends at 3+created: task 1 at 18, task 2 at 8, task 3 at 13, task 4 (running) at 103.
        for i, created in [(1, 15.0), (2, 5.0), (3, 10.0), (4, 100.0)]:
            await store.insert_task(make_task(i, created_at=created))
        expiry = await store.expire(finished_before=-1.0, now=20.0, keep=2)
        assert {t.task_id for t in expiry.removed} == {make_task(i).task_id for i in (2, 3)}
        assert expiry.remaining == 2
        left = [t.task_id for t in await store.list_tasks()]
        assert left == [make_task(i).task_id for i in (1, 4)]

    async def test_expire_never_removes_unfinished_tasks_even_over_the_cap(
        self, store: Store
    ) -> None:
        for i in range(4):
            await store.insert_task(make_task(i, created_at=10.0))  # all end at 13
        expiry = await store.expire(finished_before=100.0 - 1000, now=12.0, keep=1)
        assert expiry.removed == [] and expiry.remaining == 4
        assert len(await store.list_tasks()) == 4

    async def test_expire_without_a_cap_or_old_tasks_removes_nothing(self, store: Store) -> None:
        await store.insert_task(make_task(1))
        expiry = await store.expire(finished_before=-1.0, now=1000.0, keep=None)
        assert (expiry.removed, expiry.remaining) == ([], 1)
