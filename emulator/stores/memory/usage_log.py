"""The memory store's usage log, as its listing and its totals read it: the charges' own
numbering (pages of the log find their start without a walk), the running sums per group
(totals without reading the log). A trimmed charge leaves the numbering, not the sums.

The numbering is a second `SubmissionOrder`, over the charges rather than the tasks: a charge
gets its number when it is held (the same step) and keeps it while it stays in the log, also
after its task was evicted or expired; a trim removes it from the order as expiry removes a
task. The sums are plain lists of ints per group, moved by the same (await-free) store step as
the hold and the settlement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...core.billing import (
    COUNTED,
    Charge,
    Group,
    Settlement,
    Sums,
    counted,
    group_of,
)
from ..pages import Position
from .order import SubmissionOrder


class UsageLog:
    """The numbering and the running sums of one `MemoryStore`'s charges."""

    def __init__(self) -> None:
        self.order = SubmissionOrder()
        self._sums: dict[Group, list[int]] = {}

    def held(self, charge: Charge, charges: Mapping[str, Any]) -> None:
        """``charge`` is being held (``charges``: the log, without it yet)."""
        self.order.add(charge.task_id, charges)
        # `_add(group_of(charge), counted(charge))` written out: once per submission, where
        # the generic loop cost ~2.5 times as much (timeit).
        group = (charge.owner, charge.key, charge.model, charge.state)
        row = self._sums.get(group)
        if row is None:
            row = self._sums[group] = [0] * len(COUNTED)
        row[0] += 1
        row[1] += charge.images
        row[2] += charge.amount
        row[3] += charge.taken
        row[4] += charge.refunded
        if charge.state == "held":
            row[5] += charge.held

    def settled(self, charge: Charge, end: Settlement, refunded: int) -> None:
        """The held ``charge`` ends as ``end`` with ``refunded`` given back: its sums move
        from its held group to its new state's."""
        self._add(group_of(charge), counted(charge), -1)
        moved = (1, end.images, end.amount, charge.taken, refunded, 0)
        self._add((charge.owner, charge.key, charge.model, end.state), moved)

    def trimmed(self, task_id: str, charges: Mapping[str, Any]) -> None:
        """``task_id``'s (finished) charge left the log (``charges``: without it): its
        running sums stay (a trimmed charge still counts)."""
        self.order.removed(task_id, charges)

    def page(
        self, after: Position | None, count: int, charges: Mapping[str, Any]
    ) -> tuple[list[str], Position | None, bool] | None:
        return self.order.page(after, count, charges)

    def sums(self) -> list[Sums]:
        return [Sums(*group, *row) for group, row in self._sums.items()]  # type: ignore[arg-type]

    def clear(self) -> None:
        """Forget the sums and the positions; the numbering goes on (`SubmissionOrder.clear`)."""
        self.order.clear()
        self._sums.clear()

    def _add(self, group: Group, values: tuple[int, ...], sign: int = 1) -> None:
        row = self._sums.get(group)
        if row is None:
            row = self._sums[group] = [0] * len(COUNTED)
        for i, value in enumerate(values):
            row[i] += sign * value
