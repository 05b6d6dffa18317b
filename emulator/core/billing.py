"""Billing: what each task costs, held at submission, settled at completion, released on failure.

Prices are data (`emulator/data/prices.toml`, placeholders) in integer credits so every sum is
exact. NanoBanana models cost a unit price per image; gpt-image-2 costs by size tier x quality
per image. Only images actually returned are paid for.

Money moves only inside the store's atomic steps; this module says how much. A hold takes its
cost from the key's balance when the key has one (``taken``; nothing when unlimited). When the
task ends, ``settlement`` fixes what is paid and what of the taken credits goes back: never more
than was taken, and only to a balance that exists then (docs/invariants.md).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from .catalogue import Catalogue
from .frozen import builder

ChargeState = Literal["held", "settled", "released"]


@dataclass(frozen=True, slots=True)
class PriceTable:
    """The price per image of every model and tier (`data/prices.toml` or the user's table)."""

    unit: str
    nano: Mapping[str, int]
    #: tier -> quality -> price per image
    gpt: Mapping[str, Mapping[str, int]]

    @classmethod
    def load(cls, path: str | Path | None = None, catalogue: Catalogue | None = None) -> PriceTable:
        """Read prices (default: the packaged placeholders); check they cover the catalogue."""
        if path is None:
            text = resources.files("emulator").joinpath("data/prices.toml").read_text("utf-8")
            raw: dict[str, Any] = tomllib.loads(text)
        else:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        table = cls(
            unit=str(raw.get("unit", "credits")),
            nano={k: _price(v, f"nano.{k}") for k, v in raw.get("nano", {}).items()},
            gpt={
                tier: {q: _price(v, f"gpt.{tier}.{q}") for q, v in row.items()}
                for tier, row in raw.get("gpt", {}).items()
            },
        )
        if catalogue is not None:
            table.check_covers(catalogue)
        return table

    def check_covers(self, catalogue: Catalogue) -> None:
        for name, spec in catalogue.models.items():
            if spec.family == "nano" and name not in self.nano:
                raise ValueError(f"price table has no price for model {name!r}")
        qualities = catalogue.families["gpt"].qualities
        for tier in set(catalogue.gpt_sizes.values()):
            for quality in qualities:
                if quality not in self.gpt.get(tier, {}):
                    raise ValueError(f"price table has no gpt-image-2 price for {tier}/{quality}")

    def unit_price(self, model: str, tier: str | None, quality: str | None) -> int:
        """Price of one image."""
        if model in self.nano:
            return self.nano[model]
        return self.gpt[tier or ""][quality or ""]


def _price(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"price {where} must be a whole number >= 0, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Charge:
    """One task's line in the usage log."""

    task_id: str
    owner: str
    key: str  # masked
    time: float
    model: str
    tier: str | None
    quality: str | None
    n: int
    unit_price: int
    #: Held at submission: unit_price x n.
    held: int
    state: ChargeState = "held"
    images: int = 0
    #: What was finally paid: unit_price x images returned (0 when released).
    amount: int = 0
    settled_at: float | None = None
    #: Taken from the key's balance by the hold: ``held`` when the key had a balance then,
    #: 0 when it was unlimited. Set by the store.
    taken: int = 0
    #: Given back to the key's balance when the task ended (at most ``taken - amount``).
    refunded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


#: ``Charge(...)`` at the cost of a plain class, for every submission (``core.frozen``).
ChargeBuilder = builder(Charge)


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a held charge ends: its state, the images paid for, the amount, what goes back."""

    state: ChargeState
    images: int
    amount: int
    #: What goes back to the balance, if the key still has one: the unpaid part of ``taken``.
    back: int


def settlement(charge: Charge, images: int) -> Settlement:
    """How a held charge ends when its task returned ``images`` (0: failed). The amount comes
    from the price recorded at submission, so a later price table cannot change it."""
    amount = min(charge.held, charge.unit_price * images)
    return Settlement(
        "settled" if images > 0 else "released",
        images,
        amount,
        charge.taken - min(charge.taken, amount),
    )


#: The sums a group's charges add up to, in order (`Sums` adds what the held ones hold).
SUMMED = ("tasks", "images", "paid", "taken", "refunded")


@dataclass(frozen=True, slots=True)
class Sums:
    """The running sums of every charge made since the last reset (listed in the usage log or
    trimmed from it) per owner, key, model and state: what a store keeps so that the usage
    totals cost the number of groups, not of charges. A hold adds its charge to its group; a
    settlement moves it to its new state's group, in the same store step; a trim moves
    nothing (a trimmed charge still counts). A group may be left with no ``tasks`` (every held
    charge of it finished): it counts for nothing."""

    owner: str
    key: str
    model: str
    state: ChargeState
    tasks: int = 0
    images: int = 0
    paid: int = 0
    taken: int = 0
    refunded: int = 0
    #: What the group's charges still hold (only a "held" group's is not 0).
    held: int = 0


#: The fields of `Sums` that add up, in order.
COUNTED = (*SUMMED, "held")
#: A group of `Sums`: (owner, key, model, state).
Group = tuple[str, str, str, str]


def group_of(charge: Charge) -> Group:
    return (charge.owner, charge.key, charge.model, charge.state)


def counted(charge: Charge) -> tuple[int, int, int, int, int, int]:
    """What one charge adds to its group's `Sums` (`COUNTED` order)."""
    held = charge.held if charge.state == "held" else 0
    return (1, charge.images, charge.amount, charge.taken, charge.refunded, held)


def sums_of(charges: Iterable[Charge], dropped: Iterable[tuple[Any, ...]] = ()) -> list[Sums]:
    """The `Sums` of ``charges`` and of the ``dropped`` rows, each (owner, key, model, state,
    then the `SUMMED` sums of finished charges no longer listed): how a store builds them,
    once, from a log kept before it kept sums (an older SQLite file or Redis prefix, whose
    trimmed charges live on only as such rows)."""
    groups: dict[Group, list[int]] = {}
    for charge in charges:
        row = groups.setdefault(group_of(charge), [0] * len(COUNTED))
        for i, value in enumerate(counted(charge)):
            row[i] += value
    for owner, key, model, state, *sums in dropped:
        row = groups.setdefault((owner, key, model, state), [0] * len(COUNTED))
        for i, value in enumerate(sums):
            row[i] += int(value)
    return [Sums(*group, *row) for group, row in groups.items()]  # type: ignore[arg-type]


#: A totals row's members, in the order `totals_of` gives them.
_ROW = ("held", *SUMMED)


def totals_of(sums: Iterable[Sums]) -> dict[str, Any]:
    """The usage totals (paid, taken, refunded, held; per key and per model also tasks and
    images) from the groups' running sums: every charge counted, at the cost of the groups.
    Each group's values read once, by name (a group per key ever used: thousands of them
    where a fuzzer or a test per key submits, docs/hardening.md)."""
    by_key: dict[str, dict[str, int]] = {}
    by_model: dict[str, dict[str, int]] = {}
    paid = taken = refunded = held = 0
    for r in sums:
        if not r.tasks:
            continue
        values = (r.held, r.tasks, r.images, r.paid, r.taken, r.refunded)  # `_ROW` order
        paid, taken, refunded, held = (
            paid + r.paid,
            taken + r.taken,
            refunded + r.refunded,
            held + r.held,
        )
        for bucket, name in ((by_key, r.key), (by_model, r.model)):
            row = bucket.get(name)
            if row is None:
                bucket[name] = dict(zip(_ROW, values, strict=True))
            else:
                for field, value in zip(_ROW, values, strict=True):
                    row[field] += value
    top = {"paid": paid, "taken": taken, "refunded": refunded, "held": held}
    return {**top, "by_key": by_key, "by_model": by_model}


_Row = TypeVar("_Row")


def matching(rows: list[_Row], wanted: Mapping[str, str]) -> list[_Row]:
    """The rows (`Sums` or `Charge` objects) whose fields (owner, model, state) equal those
    ``wanted``."""
    return [r for r in rows if all(getattr(r, name) == v for name, v in wanted.items())]
