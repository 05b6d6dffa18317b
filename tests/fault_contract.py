"""What every Store backend must do with fault rules: their order, hits, claims and
installations. Part of the store contract (``StoreContract``, tests/store_contract.py), so it
runs on the memory, SQLite and Redis stores."""

from __future__ import annotations

import dataclasses

from emulator.stores.base import Store

from .store_support import gather, make_rule


class FaultRuleContract:
    """Fault rules and their counters. Subclasses provide ``store``."""

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
