"""Billing: what each task costs, held at submission, settled at completion, released on failure.

Prices are data (`emulator/data/prices.toml`, placeholders) in integer credits so every sum is
exact. NanoBanana models cost a unit price per image; gpt-image-2 costs by size tier x quality
per image. Only images actually returned are paid for.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .catalogue import Catalogue

ChargeState = Literal["held", "settled", "released"]


@dataclass(frozen=True, slots=True)
class PriceTable:
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

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def totals(charges: list[Charge]) -> dict[str, Any]:
    """Sums per key and per model: paid (settled), held (still running) and images."""
    by_key: dict[str, dict[str, int]] = {}
    by_model: dict[str, dict[str, int]] = {}
    for c in charges:
        for bucket, name in ((by_key, c.key), (by_model, c.model)):
            row = bucket.setdefault(name, {"paid": 0, "held": 0, "images": 0, "tasks": 0})
            row["tasks"] += 1
            row["images"] += c.images
            row["paid"] += c.amount
            row["held"] += c.held if c.state == "held" else 0
    paid = sum(c.amount for c in charges)
    held = sum(c.held for c in charges if c.state == "held")
    return {"paid": paid, "held": held, "by_key": by_key, "by_model": by_model}
