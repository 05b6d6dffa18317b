"""Builders the store contract's tests share (tests/store_contract.py and its parts, and the
store tests beside them): a plausible task and its charge, a fault rule, a submission with its
hold, concurrent calls."""

from __future__ import annotations

from typing import Any

import anyio

from emulator.core.billing import Charge
from emulator.core.faults import Effect, FaultRule, Match
from emulator.core.tasks import Schedule, Task
from emulator.stores.base import Store


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
