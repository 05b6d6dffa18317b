"""What a test does to an emulator, as coroutines on the `Emulator` itself (no HTTP).

The pytest fixture runs these on the emulator's own loop (emulator/app_loop.py); they are the
control plane's operations without the transport: the same rules, the same errors (an
`EmulatorError` whose message names the argument and the rule; the ones about an argument's
value are also ValueErrors), the same views.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from ..config import FIXED_SETTINGS, ConfigError
from ..core.clock import ManualClock
from ..core.journal import mask_key, query_from_filters
from ..errors import EmulatorError, InvalidRequest
from ..stores.factory import masked_url
from .sweep import is_expired

if TYPE_CHECKING:
    from ..config import Settings
    from ..core.tasks import Task
    from .emulator import Emulator

#: Most fault rules installed at once.
MAX_FAULT_RULES = 1000
MAX_ADVANCE = 10**9
MAX_BALANCE = 10**15


class ArgumentError(InvalidRequest, ValueError):
    """A steering call's argument breaks a rule; the message names the argument."""


# -- time and tasks -----------------------------------------------------------------------
async def advance(emulator: Emulator, seconds: float) -> float:
    """Move the manual clock forward by ``seconds``; the new virtual time."""
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_ADVANCE
    ):
        raise ArgumentError(
            f"seconds must be a number between 0 and 1e9, got {seconds!r:.40}", field="seconds"
        )
    clock = emulator.clock
    if not isinstance(clock, ManualClock):
        raise EmulatorError(
            f"the clock is {emulator.settings.clock!r}; only the manual clock can be advanced",
            status_code=409,
            code="clock_not_manual",
        )
    await emulator.start()
    return await clock.advance(float(seconds))


async def view(emulator: Emulator, task: Task, base_url: str) -> dict[str, Any]:
    """A task as ``GET /_emulator/tasks/{id}`` shows it."""
    obs = await emulator.observe(task)
    return {
        "task": task.to_dict(),
        "status": obs.status,
        "progress": f"{obs.progress}%",
        "elapsed": await emulator.elapsed(task),
        "result_urls": emulator.results.urls(task, base_url) if obs.status == "succeeded" else [],
    }


async def tasks(emulator: Emulator, base_url: str) -> list[dict[str, Any]]:
    """Every task that has not expired, in submission order."""
    await emulator.start()
    return [
        await view(emulator, task, base_url)
        for task in await emulator.store.list_tasks()
        if not await is_expired(emulator, task)
    ]


async def end_task(
    emulator: Emulator,
    task_id: str,
    outcome: str,
    base_url: str,
    code: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """End a running task now (409 if it already ended: terminal states are final)."""
    for name, value in (("task_id", task_id), ("code", code), ("message", message)):
        if value is not None and not isinstance(value, str):
            raise ArgumentError(f"{name} must be a string, got {value!r:.40}", field=name)
    await emulator.start()
    task = await emulator.force_outcome(
        task_id, "succeeded" if outcome == "succeeded" else "failed", code, message
    )
    return await view(emulator, task, base_url)


async def run_until_settled(
    emulator: Emulator, base_url: str, max_steps: int
) -> list[dict[str, Any]]:
    """Advance the manual clock until every task has ended; the tasks' final views."""
    for _ in range(max_steps):
        views = await tasks(emulator, base_url)
        pending = [v for v in views if v["status"] not in ("succeeded", "failed")]
        if not pending:
            return views
        schedules = [v["task"]["schedule"] for v in pending]
        remaining = max(
            s["queued_s"] + s["processing_s"] - v["elapsed"]
            for s, v in zip(schedules, pending, strict=True)
        )
        await advance(emulator, max(remaining, 0.001))
    raise AssertionError(f"tasks still running after {max_steps} clock steps")


# -- faults -------------------------------------------------------------------------------
async def add_fault(emulator: Emulator, raw: Mapping[str, Any]) -> str:
    """Add a rule (the control plane's vocabulary); its id (``rule-N`` unless given)."""
    from ..core.faults import parse_rule

    await emulator.start()
    existing = {rule.id for rule in await emulator.store.list_faults()}
    n = len(existing) + 1
    while f"rule-{n}" in existing:
        n += 1
    rule = parse_rule(raw, f"rule-{n}")  # FaultError (a ValueError) names the field
    await emulator.store.add_fault(rule)
    return rule.id


async def faults(emulator: Emulator) -> list[dict[str, Any]]:
    """Every rule with its hits, in order."""
    await emulator.start()
    hits = await emulator.store.fault_hits()
    return [
        rule.to_dict() | {"hits": hits.get(rule.id, 0)}
        for rule in await emulator.store.list_faults()
    ]


async def fault_hits(emulator: Emulator, rule_id: str) -> int:
    return (await emulator.store.fault_hits()).get(rule_id, 0)


async def remove_fault(emulator: Emulator, rule_id: str) -> None:
    if not await emulator.store.remove_fault(rule_id):
        raise EmulatorError(
            f"fault rule {rule_id!r} does not exist", status_code=404, code="not_found"
        )


async def clear_faults(emulator: Emulator) -> None:
    await emulator.store.clear_faults()


# -- journal, usage, balances -------------------------------------------------------------
async def requests(
    emulator: Emulator, filters: Mapping[str, Any], body: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Journal entries matching every filter (emulator/journal.py says which exist)."""
    query = query_from_filters(filters, body)  # before the store: a bad filter never reads
    return query.select(await emulator.store.list_journal())


async def usage(emulator: Emulator) -> dict[str, Any]:
    """The usage log, settled up to now: entries and totals per key and model."""
    await emulator.settle_due()
    charges = await emulator.store.list_charges()
    return {
        "unit": emulator.prices.unit,
        "entries": [c.to_dict() for c in charges],
        "totals": await emulator.usage_totals(charges, {}),
    }


async def set_balance(emulator: Emulator, key: str, amount: int | None) -> None:
    """Give ``key`` a balance in credits; None: unlimited."""

    if not isinstance(key, str) or not key:
        raise ArgumentError("key must be a non-empty string", field="key")
    if amount is not None and (
        not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= MAX_BALANCE
    ):
        raise ArgumentError(
            "amount must be a whole number of credits >= 0, or None for unlimited",
            field="amount",
        )
    await emulator.set_balance(key, amount)  # one store step: settles what ended, then sets


def settings_json(settings: Settings) -> dict[str, Any]:
    """The settings as the control plane shows them: keys, the admin token and a store
    password masked."""
    out: dict[str, Any] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "faults":
            value = [rule.to_dict() for rule in value]
        elif f.name == "admin_token" and value:
            value = "***"
        elif f.name == "api_keys":
            value = [mask_key(key) for key in value]  # the control plane never shows a key
        elif f.name == "store":
            value = masked_url(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


# -- settings and state -------------------------------------------------------------------
async def configure(emulator: Emulator, changes: Mapping[str, Any]) -> Settings:
    """Change settings that may change while serving; the new settings."""
    fixed = sorted(set(changes) & FIXED_SETTINGS)
    if fixed:
        raise ConfigError(
            f"setting {fixed[0]!r} cannot change while the emulator runs; give it to "
            f"@pytest.mark.image_emulator({fixed[0]}=...) instead",
            field=fixed[0],
        )
    return await restore(emulator, emulator.settings.replace(**changes))


async def restore(emulator: Emulator, settings: Settings) -> Settings:
    """Put ``settings`` in force (every table checked before any is swapped in)."""
    try:
        emulator.reconfigure(settings)
    except (ValueError, OSError) as exc:  # ConfigError is a ValueError; OSError: a table file
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None
    return settings


async def reset(emulator: Emulator) -> None:
    """Forget tasks, journal, added faults, hits, balances, usage; the clock back to 0."""
    await emulator.reset()
