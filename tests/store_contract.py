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

from typing import Any, ClassVar

import pytest

from emulator.stores.base import Store

from .billing_contract import BillingContract
from .capacity_contract import CapacityContract
from .fault_contract import FaultRuleContract
from .journal_contract import JournalPageContract
from .listings import whole_journal, whole_usage_log
from .store_support import gather, make_rule, make_task, place
from .task_contract import TaskContract
from .task_page_contract import TaskPageContract
from .usage_contract import UsageLogContract


def store_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The keyword arguments the test asks its store to be built with: none, or those of
    ``@pytest.mark.parametrize("store", [{...}], indirect=True)``."""
    return dict(getattr(request, "param", {}))


class StoreContract(
    TaskContract,
    TaskPageContract,
    FaultRuleContract,
    BillingContract,
    CapacityContract,
    UsageLogContract,
    JournalPageContract,
):
    """The Store interface's semantics: tasks (tests/task_contract.py), the task listing's
    pages (tests/task_page_contract.py), fault rules (tests/fault_contract.py), billing
    (tests/billing_contract.py), the cap and expiry (tests/capacity_contract.py), the usage
    log's pages and sums (tests/usage_contract.py), the journal's pages
    (tests/journal_contract.py); here, what is left: blobs, the clock, the journal, reset.
    Subclasses provide the ``store`` fixture."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

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
