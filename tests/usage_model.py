"""The tests' own record of the charges they made, to check a store's usage totals against.

A store keeps running sums of every charge held since the last reset (`Store.usage_sums`), and
its usage log lists only the held charges and the newest ``usage_log_limit`` finished ones: the
log cannot tell whether the sums count the charges trimmed from it. `Ledger` can: a test makes
its holds, settlements, expiries, balances and resets through it, and it works out each
charge's outcome from what the test asked for (the prices of `make_charge`, the balances it
set, `billing.settlement`, the tasks' schedules), never from what the store answers. `check`
then compares the store's sums with the whole-list formula (`whole_list_totals`) over every
charge the ledger knows, trimmed ones included, for every filter, and the log the store lists
with the ledger's charges.

What it does not follow, it refuses to guess (an assertion says so): a full store that would
evict, and polls (a per_poll task never ends here).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from emulator.core.billing import Charge, matching, settlement, totals_of
from emulator.core.tasks import Task, ended_at, has_ended, images_returned
from emulator.stores.base import Expiry, Store

from .listings import whole_usage_log
from .store_support import make_charge, place


class Ledger:
    """Every charge ``store`` held since the last reset, as the test knows it (the module)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: The latest of each charge by task id, in hold order.
        self.charges: dict[str, Charge] = {}
        #: The tasks stored (until expiry removes them): what settle_due and expire look at.
        self.tasks: dict[str, Task] = {}
        self.balances: dict[str, int] = {}

    # -- steps: the store's, recorded ---------------------------------------------------------
    async def place(
        self,
        task: Task,
        *,
        held: int = 6,
        cap: int = 0,
        now: float = 0.0,
        model: str = "gpt-image-2",
    ) -> str:
        """`store_support.place`, and what it should have answered."""
        answer = await place(self.store, task, held=held, cap=cap, now=now, model=model)
        assert answer == self._placed(task, held, cap, now, model), task.task_id
        return answer

    def _placed(self, task: Task, held: int, cap: int, now: float, model: str) -> str:
        if task.task_id in self.tasks:
            return "taken"
        if cap and len(self.tasks) >= cap:
            ended = [t.task_id for t in self.tasks.values() if has_ended(t, now)]
            assert not ended, "the ledger does not follow evictions: a full store of ended tasks"
            return "full"
        owner = task.owner
        if owner in self.balances and self.balances[owner] < held:
            self._settle_due(now)  # what ended gives back first (Store.insert_held)
            if self.balances[owner] < held:
                return "refused"
        number = int(task.task_id[5:], 16)
        charge = make_charge(number, owner=owner, held=held, model=model)
        if owner in self.balances:
            self.balances[owner] -= held
            charge = dataclasses.replace(charge, taken=held)
        self.charges.pop(task.task_id, None)  # an id used again after its charge was trimmed
        self.charges[task.task_id] = charge
        self.tasks[task.task_id] = task
        return "placed"

    async def settle(self, task_id: str, images: int, at: float) -> bool:
        settled = await self.store.settle(task_id, images, at)
        assert settled == self._settle(task_id, images, at), task_id
        return settled

    def _settle(self, task_id: str, images: int, at: float) -> bool:
        charge = self.charges.get(task_id)
        if charge is None or charge.state != "held":
            return False
        end = settlement(charge, images)
        refunded = end.back if charge.owner in self.balances else 0
        if refunded:
            self.balances[charge.owner] += refunded
        self.charges[task_id] = dataclasses.replace(
            charge,
            state=end.state,
            images=end.images,
            amount=end.amount,
            settled_at=at,
            refunded=refunded,
        )
        return True

    async def settle_due(self, now: float) -> int:
        settled = await self.store.settle_due(now)
        assert settled == self._settle_due(now)
        return settled

    def _settle_due(self, now: float) -> int:
        due = [t for t in self.tasks.values() if has_ended(t, now)]
        return sum(self._settle(t.task_id, images_returned(t), ended_at(t)) for t in due)

    async def expire(self, finished_before: float, now: float) -> Expiry:
        expiry = await self.store.expire(finished_before, now)
        gone = [
            t for t in self.tasks.values() if ended_at(t) <= finished_before and has_ended(t, now)
        ]
        for task in gone:
            del self.tasks[task.task_id]
            self._settle(task.task_id, images_returned(task), ended_at(task))
        assert expiry == Expiry(len(gone), len(self.tasks))
        return expiry

    async def set_balance(
        self, owner: str, label: str, amount: int | None, now: float = 0.0
    ) -> None:
        assert await self.store.set_balance(owner, label, amount, now)
        self._settle_due(now)
        if amount is None:
            self.balances.pop(owner, None)
        else:
            self.balances[owner] = amount

    async def reset(self) -> None:
        await self.store.reset()
        self.charges.clear()
        self.tasks.clear()
        self.balances.clear()

    # -- the check -------------------------------------------------------------------------
    async def check(self) -> None:
        """The store's running sums give the whole-list formula's totals over every charge
        the ledger knows (listed or trimmed), for every filter; its balances are the
        ledger's; and its log lists, in hold order and as the ledger has them, every held
        charge and as many finished ones as ``usage_log_limit`` keeps (trimming with the
        limit in force now: a test that changes it changes it before its steps)."""
        sums = await self.store.usage_sums()
        made = list(self.charges.values())
        owners = {c.owner for c in made} | {s.owner for s in sums} | {"nobody"}
        models = {c.model for c in made} | {s.model for s in sums} | {"no-model"}
        states = ("held", "settled", "released")
        for owner, model, state in itertools.product(
            (None, *owners), (None, *models), (None, *states)
        ):
            wanted = {"owner": owner} if owner else {}
            wanted |= {"model": model} if model else {}
            wanted |= {"state": state} if state else {}
            expected = whole_list_totals(matching(made, wanted))
            assert totals_of(matching(sums, wanted)) == expected, wanted
        amounts = {
            owner: amount for owner, (_, amount) in (await self.store.list_balances()).items()
        }
        assert amounts == self.balances
        listed = await whole_usage_log(self.store)
        assert listed == [self.charges[c.task_id] for c in listed], "a listed charge differs"
        ids = [c.task_id for c in listed]
        assert ids == [i for i in self.charges if i in set(ids)], "not in hold order"
        held = [i for i, c in self.charges.items() if c.state == "held"]
        assert set(held) <= set(ids), "a held charge left the log"
        limit = self.store.usage_log_limit
        finished = len(self.charges) - len(held)
        kept = finished if limit is None else min(limit, finished)
        assert len(ids) - len(held) == kept, "the log keeps another number of finished charges"

    def trimmed(self, listed: list[Charge]) -> list[Charge]:
        """The ledger's charges not in ``listed`` (the log as read): those trimmed from it."""
        ids = {c.task_id for c in listed}
        return [c for i, c in self.charges.items() if i not in ids]


#: A totals row's members.
_ROW = ("held", "tasks", "images", "paid", "taken", "refunded")


def whole_list_totals(charges: list[Charge]) -> dict[str, Any]:
    """Sums per key and per model of ``charges``: paid (settled), held (still running),
    images, tasks, and what holds took from balances and gave back. It reads every charge,
    which the usage route cannot (the bounded log no longer lists them all; it reads
    `billing.totals_of` the stores' running `Sums`): the formula those sums must equal, over
    every charge the ledger knows."""
    by_key: dict[str, dict[str, int]] = {}
    by_model: dict[str, dict[str, int]] = {}
    for c in charges:
        held = c.held if c.state == "held" else 0
        values = (held, 1, c.images, c.amount, c.taken, c.refunded)  # `_ROW` order
        for bucket, name in ((by_key, c.key), (by_model, c.model)):
            row = bucket.setdefault(name, dict.fromkeys(_ROW, 0))
            for field, value in zip(_ROW, values, strict=True):
                row[field] += value
    top = {
        "paid": sum(c.amount for c in charges),
        "taken": sum(c.taken for c in charges),
        "refunded": sum(c.refunded for c in charges),
        "held": sum(c.held for c in charges if c.state == "held"),
    }
    return {**top, "by_key": by_key, "by_model": by_model}
