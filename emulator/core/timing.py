"""Task durations as data: per model / tier / quality, fixed or drawn from a seeded RNG (a
task's ``KeyedDraws``, or any ``random.Random``: ``core.draws.Draws``)."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .draws import Draws

Dist = Literal["fixed", "uniform", "lognormal"]
_exp = math.exp


@dataclass(frozen=True, slots=True)
class Duration:
    """A distribution of seconds (fixed, uniform, lognormal, ...) drawn per task."""

    dist: Dist
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> Duration:
        dist = raw.get("dist")
        try:
            if dist == "fixed":
                return cls("fixed", float(raw["value"]))
            if dist == "uniform":
                low, high = float(raw["low"]), float(raw["high"])
                if low > high:
                    raise ValueError("low > high")
                return cls("uniform", low, high)
            if dist == "lognormal":
                return cls("lognormal", float(raw["median"]), float(raw["sigma"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"timing {where}: bad {dist} duration {dict(raw)!r}: {exc}") from None
        raise ValueError(f"timing {where}: dist must be fixed, uniform or lognormal, got {dist!r}")

    def draw(self, rng: Draws) -> float:
        return _drawn(self.dist, self.a, self.b, rng)


def _drawn(dist: Dist, a: float, b: float, rng: Draws) -> float:
    """A duration drawn from ``rng``: the same floats, and the same draws from ``rng``, as
    ``max(0.0, rng.uniform(a, b))`` and ``max(0.0, min(a * 4, max(a / 4, a *
    exp(rng.gauss(0, b)))))`` (tests/test_timing.py compares them over many seeds), without
    their calls: ``uniform`` is the expression its documentation gives, and ``max(x, y)``
    is ``y if y > x else x`` (the first of equals; NaN compares false), ``min`` likewise."""
    if dist == "fixed":
        value = a
    elif dist == "uniform":
        value = a + (b - a) * rng.random()
    else:
        # Clamped so one unlucky draw cannot park a task for an hour.
        value = a * _exp(rng.gauss(0, b))
        low = a / 4
        value = value if value > low else low
        high = a * 4
        value = value if value < high else high
    return value if value > 0.0 else 0.0


@dataclass(frozen=True, slots=True)
class Timing:
    """Lookup of (queued, processing) durations, most specific entry first."""

    entries: Mapping[str, Mapping[str, Duration]]
    #: Lookups already made (the table is frozen, so they never change): one per submission.
    _found: dict[tuple[str, str | None, str | None], tuple[Duration, Duration]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def load(cls, path: str | Path | None = None) -> Timing:
        if path is None:
            text = resources.files("emulator").joinpath("data/timing.toml").read_text("utf-8")
            raw = tomllib.loads(text)
        else:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        entries = {
            key: {
                phase: Duration.parse(spec, f"[{key}].{phase}")
                for phase, spec in table.items()
                if phase in ("queued", "processing")
            }
            for key, table in raw.items()
        }
        if "queued" not in entries.get("*", {}) or "processing" not in entries.get("*", {}):
            raise ValueError('timing: the "*" entry must give both queued and processing')
        return cls(entries)

    def durations(
        self, model: str, tier: str | None, quality: str | None
    ) -> tuple[Duration, Duration]:
        found = self._found.get((model, tier, quality))
        if found is None:
            found = self._found[model, tier, quality] = self._look_up(model, tier, quality)
        return found

    def _look_up(
        self, model: str, tier: str | None, quality: str | None
    ) -> tuple[Duration, Duration]:
        keys = [f"{model}/{tier}/{quality}", f"{model}/{tier}", model, "*"]
        found: dict[str, Duration] = {}
        for key in keys:
            for phase, duration in self.entries.get(key, {}).items():
                found.setdefault(phase, duration)
        return found["queued"], found["processing"]

    def draw(
        self,
        rng: Draws,
        model: str,
        tier: str | None,
        quality: str | None,
        time_scale: float,
    ) -> tuple[float, float]:
        """(queued seconds, processing seconds), already multiplied by ``time_scale``."""
        queued, processing = self.durations(model, tier, quality)
        return (
            _drawn(queued.dist, queued.a, queued.b, rng) * time_scale,
            _drawn(processing.dist, processing.a, processing.b, rng) * time_scale,
        )
