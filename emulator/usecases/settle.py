"""Money, as the emulator moves it: a task's charge (held at submission), settled or released
when it ends, balances set, and the usage log with its totals.

How much is decided by ``emulator.core.billing``; every move happens inside one of the store's
atomic steps, so concurrent requests (and workers) never lose or double a credit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.billing import Charge, ChargeBuilder, matching, sums_of, totals_of
from ..core.checks import MAX_TEXT_CHARS, text_problem
from ..core.clock import Clock
from ..core.keys import key_fingerprint, mask_key
from ..core.tasks import Observation, Task, ended_at
from ..errors import InvalidRequest
from ..stores import Store
from .configuration import Configuration
from .pages import MAX_PAGE, gone, next_cursor, page_request, walk
from .poll import Tasks

#: The largest balance a key may be given, in credits.
MAX_BALANCE = 10**15


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be given a balance (None: it can)."""
    if not isinstance(key, str) or not key:
        return "must be a non-empty string"
    return text_problem(key, MAX_TEXT_CHARS)


def balance_problem(amount: object) -> str | None:
    """Why ``amount`` cannot be a balance (None: it can; None itself means unlimited)."""
    if amount is None:
        return None
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= MAX_BALANCE:
        return "must be a whole number of credits >= 0 (at most 1e15)"
    return None


class BalanceLimitError(InvalidRequest, ValueError):
    """A new key's balance would pass ``max_balances`` (400 naming it); a ValueError for
    Python callers."""


class Billing:
    """Charges, settlements, balances and usage of one emulator."""

    def __init__(self, store: Store, clock: Clock, config: Configuration, tasks: Tasks) -> None:
        self._store, self._clock, self._config, self._tasks = store, clock, config, tasks

    def charge(self, task: Task, api_key: str) -> Charge:
        """What ``task`` holds when it is accepted: its images at today's price."""
        unit = self._config.prices.unit_price(task.model, task.tier, task.quality)
        return ChargeBuilder(
            *(task.task_id, task.owner, mask_key(api_key), task.created_at, task.model),
            *(task.tier, task.quality, task.n, unit, unit * task.n),
        )

    async def settle(self, task: Task, obs: Observation) -> None:
        """Settle (succeeded: pay for the images returned) or release (failed) a task's hold,
        once ``obs`` shows it ended; the store gives back only what the hold took."""
        if not obs.terminal:
            return
        images = task.schedule.images if obs.status == "succeeded" else 0
        await self._store.settle(task.task_id, images, ended_at(task))

    async def settle_due(self) -> None:
        """Settle every held charge whose task has ended by now. Indexed: costs what is due."""
        await self._store.settle_due(self._tasks.step_now(await self._clock.now()))

    async def set_balance(self, api_key: str, amount: int | None) -> None:
        """Set the balance of ``api_key`` (None: unlimited) in one store step that first
        settles what has ended, so no task that ended before it is settled against it."""
        await self._set(key_fingerprint(api_key), mask_key(api_key), amount)

    async def set_owner_balance(self, owner: str, amount: int | None) -> bool:
        """`set_balance` for a key known only by its fingerprint (a row of the balances);
        False when no key with that fingerprint has a balance."""
        balances = await self._store.list_balances()
        if owner not in balances:
            return False
        await self._set(owner, balances[owner][0], amount)
        return True

    async def _set(self, owner: str, label: str, amount: int | None) -> None:
        """Set in one store step, which refuses a new key beyond ``max_balances``: each key
        with a balance is a row of every balances listing, so their number is bounded."""
        now = self._tasks.step_now(await self._clock.now())
        most = self._config.settings.max_balances
        if not await self._store.set_balance(owner, label, amount, now, most):
            raise BalanceLimitError(
                f"at most {most} keys can have a balance at once (setting max_balances), and "
                f"{most} have one: remove one (balance null) or raise the setting",
                field="max_balances",
            )

    async def usage(
        self, filters: Mapping[str, str], *, limit: object = MAX_PAGE, after: object = None
    ) -> dict[str, Any]:
        """One page of the usage log settled up to now: the entries matching ``filters``
        (``key``, ``model``, ``state``, ``task_id``) among at most ``limit`` charges (1 to
        `MAX_PAGE`) in hold order after the cursor ``after`` (None: from the first), the
        cursor of the next page (``next``, None: none follows), and the totals of every
        charge ever made that matches (the bounded log's trimmed ones included; with
        ``task_id``, that one listed charge's). A page may hold fewer matches than ``limit``,
        even none, while more follow: its cost is ``limit`` charges, and the totals' the
        number of (owner, key, model, state) groups, however long the log. CursorGone when
        ``after`` is of another numbering. Callers check the filters' names first: the
        control plane refuses any other with a 400 (``core.query``)."""
        count, position = page_request(limit, after)
        await self.settle_due()
        page = await self._store.charge_page(position, count)
        if page is None:
            raise gone(str(after), "charges")
        wanted = {name: filters[name] for name in ("model", "state") if name in filters}
        if "key" in filters:
            wanted["owner"] = key_fingerprint(filters["key"])
        if "task_id" in filters:
            wanted["task_id"] = filters["task_id"]
        entries = [c.to_dict() for c in page.charges if _matches(c, wanted)]
        if "task_id" in filters:
            # One charge, read by its id: its own totals (a group's sums count others too).
            charge = await self._store.get_charge(filters["task_id"])
            sums = sums_of([charge] if charge is not None and _matches(charge, wanted) else [])
        else:
            sums = matching(await self._store.usage_sums(), wanted)
        return {
            "unit": self._config.prices.unit,
            "entries": entries,
            "totals": totals_of(sums),
            "next": next_cursor(page.more, page.last),
        }

    async def usage_log(self, filters: Mapping[str, str]) -> dict[str, Any]:
        """The whole usage log matching ``filters``, read page by page (`usage`): every entry,
        and the totals as the last page read them. For tests and in-process tools (its cost
        is the log's). Charges trimmed between two pages do not stop the walk; CursorGone if
        the numbering started again between them (the walk would skip charges): never a
        partial list passed off as whole."""
        last: dict[str, Any] = {}

        async def read(after: str | None) -> tuple[list[dict[str, Any]], str | None]:
            last.update(await self.usage(filters, after=after))
            return last["entries"], last["next"]

        entries = await walk(read, "the charge", "entries")
        return {"unit": last["unit"], "entries": entries, "totals": last["totals"]}

    async def newest(self, count: int) -> dict[str, Any]:
        """The newest ``count`` entries of the usage log settled up to now, newest first, and
        the totals of every charge (the dashboard's first view: bounded by ``count``)."""
        await self.settle_due()
        charges = await self._store.charge_tail(count)
        return {
            "unit": self._config.prices.unit,
            "entries": [c.to_dict() for c in reversed(charges)],
            "totals": totals_of(await self._store.usage_sums()),
        }

    async def charge_of(self, task_id: str) -> dict[str, Any] | None:
        """The task's charge while the usage log lists it, settled up to now (one read)."""
        await self.settle_due()
        charge = await self._store.get_charge(task_id)
        return None if charge is None else charge.to_dict()

    async def balances(self) -> list[dict[str, Any]]:
        """Every key with a balance (masked), settled up to now."""
        await self.settle_due()
        return [
            {"owner": owner, "key": label, "balance": amount}
            for owner, (label, amount) in (await self._store.list_balances()).items()
        ]


def _matches(charge: Charge, wanted: Mapping[str, str]) -> bool:
    return all(getattr(charge, name) == value for name, value in wanted.items())


__all__ = ["MAX_BALANCE", "BalanceLimitError", "Billing", "balance_problem", "key_problem"]
