"""The control plane's fault rules: installing, listing and removing them, and reading their
hits, each installation told apart by its serial (a test's handle reads only its own rule).
Which rule answers a request is `FaultPicker`'s (``faults``); the rules themselves are
``emulator.core.faults``. Reached through `Steering.fault_rules`, the one implementation for
the HTTP control plane, the dashboard and the pytest fixture's handle.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.checks import shown
from ..core.fault_parsing import check_rule_count, parse_rule
from ..core.faults import FaultRule
from ..errors import EmulatorError
from ..stores import Store
from .configuration import Configuration
from .startup import Startup


class FaultGone(EmulatorError, LookupError):
    """The rule a test's handle added is no longer installed (removed, cleared, reset, or
    replaced by another rule under its id): what it did can no longer be told."""

    status_code = 404
    code = "not_found"

    def __init__(self, rule_id: str, replaced: bool) -> None:
        why = (
            "was replaced by another rule with the same id (an add naming that id, or the ids "
            "numbered again after a reset)"
            if replaced
            else "is no longer installed (removed or cleared through the control plane, the "
            "dashboard or another handle, or a reset)"
        )
        super().__init__(
            f"fault rule {shown(rule_id)} that this handle added {why}, so its hits can no "
            "longer be told; read .hits before it goes, or remove it with the handle's "
            ".remove(), after which .hits is the count it had then",
            field="id",
        )


class FaultRules:
    """The fault rules installed in one emulator's store, as the control plane steers them."""

    def __init__(self, store: Store, config: Configuration, startup: Startup) -> None:
        self._store, self._config, self._startup = store, config, startup

    async def add_faults(self, raws: Sequence[Any]) -> list[FaultRule]:
        """Add rules in the control plane's vocabulary, each ``rule-N`` unless it names its
        id; FaultError (a ValueError) names the field of the first bad one (``fault.x``, or
        ``faults[i].x`` among several), and then none is added."""
        await self._startup.ensure()
        existing = {rule.id for rule in await self._store.list_faults()}
        limit = self._config.settings.max_fault_rules
        check_rule_count(len(existing), len(raws), limit, "fault" if len(raws) == 1 else "faults")
        rules = []
        for i, raw in enumerate(raws):
            n = len(existing) + 1
            while f"rule-{n}" in existing:
                n += 1
            where = "fault" if len(raws) == 1 else f"faults[{i}]"
            rule = parse_rule(raw, f"rule-{n}", where, self._config.catalogue.model_names)
            # Its own installation: a handle on it never reads a later rule under its id.
            rule = dataclasses.replace(rule, serial=secrets.token_hex(8))
            existing.add(rule.id)
            rules.append(rule)
        for rule in rules:
            await self._store.add_fault(rule)
        return rules

    async def add_fault(self, raw: Mapping[str, Any]) -> str:
        """Add one rule; its id."""
        return (await self.add_faults([raw]))[0].id

    async def faults(self) -> list[dict[str, Any]]:
        """Every rule with its hits, in order."""
        await self._startup.ensure()
        hits = await self._store.fault_hits()
        rules = await self._store.list_faults()
        return [rule.to_dict() | {"hits": hits.get(rule.id, 0)} for rule in rules]

    async def fault_hits(self, rule_id: str, serial: str) -> int:
        """The hits of the rule added as ``rule_id`` with ``serial`` (a handle's rule), read
        with its serial in one step; FaultGone when that rule is no longer installed."""
        found = await self._store.fault_rule_hits(rule_id)
        if found is None or found[0] != serial:
            raise FaultGone(rule_id, replaced=found is not None)
        return found[1]

    async def remove_fault(self, rule_id: str, serial: str | None = None) -> int:
        """Remove a rule (given ``serial``: only that installation of it); the hits it had
        taken, read in the same step as the removal."""
        hits = await self._store.remove_fault(rule_id, serial)
        if hits is not None:
            return hits
        if serial is not None:
            raise FaultGone(
                rule_id, replaced=await self._store.fault_rule_hits(rule_id) is not None
            )
        raise EmulatorError(
            f"fault rule {shown(rule_id)} does not exist", status_code=404, code="not_found"
        )

    async def clear_faults(self) -> None:
        await self._store.clear_faults()


__all__ = ["FaultGone", "FaultRules"]
