"""What every Store backend must do, whatever it keeps state in.

Subclass ``StoreContract`` and provide a ``store`` fixture that yields a fresh, empty store (an
async fixture is fine: the tests run under anyio), built with the keyword arguments
``store_options(request)`` gives: a test asks for them by parametrizing ``store`` indirectly;
and a ``renumbered`` fixture: an async callable that, given the store, answers a store whose
task numbering started again (a new store, a new file, the backend's state wiped).
The tests talk only to the ``Store`` interface, so a backend passes them exactly when it
behaves like ``MemoryStore``; the concurrency tests make many calls at once, which proves
atomicity on a backend shared by several connections (on one process they at least pin down
the counting).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import anyio
import pytest

from emulator.core.billing import Charge
from emulator.core.faults import Effect, FaultRule, Match
from emulator.core.tasks import Schedule, Task
from emulator.stores.base import Store

from .journal_contract import JournalPageContract
from .listings import whole_journal, whole_usage_log
from .usage_contract import UsageLogContract


def store_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The keyword arguments the test asks its store to be built with: none, or those of
    ``@pytest.mark.parametrize("store", [{...}], indirect=True)``."""
    return dict(getattr(request, "param", {}))


def make_task(
    number: int,
    *,
    owner: str = "owner-a",
    created_at: float = 0.0,
    queued_s: float = 1.0,
    processing_s: float = 2.0,
    steps: int | None = None,
) -> Task:
    """A plausible task whose schedule ends at ``created_at + queued_s + processing_s`` (or,
    with ``steps``, on the per_poll clock at its last step)."""
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
        schedule=Schedule(queued_s=queued_s, processing_s=processing_s, images=2, steps=steps),
    )


def make_charge(
    number: int, *, owner: str = "owner-a", held: int = 6, model: str = "gpt-image-2"
) -> Charge:
    """The charge of ``make_task(number)``: two images at ``held / 2`` each."""
    return Charge(
        task_id=f"task_{number:032x}",
        owner=owner,
        key=f"sk-{owner[-1]}…key",
        time=0.0,
        model=model,
        tier="1K",
        quality="low",
        n=2,
        unit_price=held // 2,
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


async def place(
    store: Store,
    task: Task,
    *,
    held: int = 6,
    blob: bytes | None = None,
    cap: int = 0,
    now: float = 0.0,
    model: str = "gpt-image-2",
) -> str:
    """Submit ``task`` with its charge (``held`` credits, for ``model``)."""
    charge = make_charge(int(task.task_id[5:], 16), owner=task.owner, held=held, model=model)
    return await store.insert_held(task, charge, blob, cap=cap, now=now)


async def gather(*calls: Any) -> list[Any]:
    """Run awaitables concurrently; their results in order."""
    results: list[Any] = [None] * len(calls)

    async def run(i: int, call: Any) -> None:
        results[i] = await call

    async with anyio.create_task_group() as group:
        for i, call in enumerate(calls):
            group.start_soon(run, i, call)
    return results


def state_of(charges: list[Charge]) -> list[tuple[str, str, int, int, int, int]]:
    """(task number, state, images, amount, taken, refunded) of each charge."""
    return [(c.task_id[-2:], c.state, c.images, c.amount, c.taken, c.refunded) for c in charges]


class StoreContract(UsageLogContract, JournalPageContract):
    """The Store interface's semantics (the usage log's pages and sums:
    tests/usage_contract.py; the journal's pages: tests/journal_contract.py). Subclasses
    provide the ``store`` fixture."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

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

    async def test_the_clock_mode_is_the_first_one_claimed_and_outlives_a_reset(
        self, store: Store
    ) -> None:
        # Claims racing on a fresh store (workers starting at once) all get the one kept.
        claims = await gather(*(store.claim_clock(m) for m in ("manual", "real", "per_poll") * 4))
        kept = claims[0]
        assert kept in ("manual", "real", "per_poll") and claims == [kept] * 12
        other = "real" if kept != "real" else "manual"
        assert await store.claim_clock(other) == kept  # a later claim changes nothing
        await store.reset()  # still the store that was kept with that clock
        assert await store.claim_clock(other) == kept

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
        assert await store.remove_fault("a") == 1  # the hits it had, read as it goes
        assert await store.remove_fault("a") is None
        assert await store.remove_fault("b", "not-its-serial") is None  # kept
        assert [r.id for r in await store.list_faults()] == ["b"]
        assert "a" not in await store.fault_hits()
        await store.clear_faults()
        assert await store.list_faults() == []
        assert await store.fault_hits() == {}

    async def test_a_rule_is_told_from_another_installed_under_its_id(self, store: Store) -> None:
        """`FaultRule.serial` is kept with the rule: a handle's reads and removal name the
        installation, so a rule replaced under the same id is never read or removed as it."""
        await store.add_fault(dataclasses.replace(make_rule("a"), serial="one"))
        assert await store.fault_rule_hits("a") == ("one", 0)
        await store.claim_fault("a", None)
        await store.claim_fault("a", None)
        assert await store.fault_rule_hits("a") == ("one", 2)
        assert await store.list_faults() == [dataclasses.replace(make_rule("a"), serial="one")]
        await store.add_fault(dataclasses.replace(make_rule("a"), serial="two"))
        assert await store.fault_rule_hits("a") == ("two", 0)
        assert await store.remove_fault("a", "one") is None  # not that installation
        await store.claim_fault("a", None)
        assert await store.remove_fault("a", "two") == 1
        assert await store.fault_rule_hits("a") is None
        assert await store.fault_rule_hits("missing") is None

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
        for i in range(5):
            await store.append_journal({"path": f"/p{i}", "status": 200}, 3)
        entries = await whole_journal(store)
        assert [e["path"] for e in entries] == ["/p2", "/p3", "/p4"]
        assert [e["seq"] for e in entries] == [3, 4, 5]
        assert entries[0] == {"path": "/p2", "status": 200, "seq": 3}

    async def test_journal_entries_keep_nested_data(self, store: Store) -> None:
        entry = {"headers": {"a": "b"}, "body": {"fields": {"n": 2}, "files": []}, "x": None}
        expected = entry | {"seq": 1}  # before the store owns ``entry`` (it may number it)
        await store.append_journal(entry, 10)
        assert (await whole_journal(store))[0] == expected

    async def test_clearing_the_journal_keeps_numbering_and_reset_restarts_it(
        self, store: Store
    ) -> None:
        await store.append_journal({"i": 1}, 10)
        await store.clear_journal()
        assert await whole_journal(store) == []
        await store.append_journal({"i": 2}, 10)
        assert await whole_journal(store) == [{"i": 2, "seq": 2}]
        await store.reset()
        await store.append_journal({"i": 3}, 10)
        assert await whole_journal(store) == [{"i": 3, "seq": 1}]

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

    # -- reset ---------------------------------------------------------------------------
    async def test_reset_forgets_everything(self, store: Store) -> None:
        store.usage_log_limit = 0
        await store.set_balance("owner-a", "sk-a…", 10)
        await place(store, make_task(1), blob=b"x")
        await place(store, make_task(2))
        await store.settle(make_task(2).task_id, 1, 1.0)
        await store.advance_clock(5)
        await store.add_fault(make_rule("a"))
        await store.claim_fault("a", None)
        await store.append_journal({"i": 1}, 10)
        await store.reset()
        assert await store.list_tasks() == []
        assert await store.get_blob(f"ref:{make_task(1).task_id}") is None
        assert await store.clock_now() == 0.0
        assert (await store.list_faults(), await store.fault_hits()) == ([], {})
        assert await whole_journal(store) == []
        assert (await whole_usage_log(store), await store.list_balances()) == ([], {})
        assert await store.usage_sums() == []  # the trimmed charge's sums with the rest
        assert await place(store, make_task(1)) == "placed"  # usable again
