"""Durations fitted to interval-censored observations, as the distributions of ``timing.toml``.

Each observation is a `Bracket`: the duration lies in ``(low, high]`` (``high`` infinite for a
task still running at its last poll). The estimator is maximum likelihood on those intervals
(each contributes ``F(high) - F(low)``), done by scipy's own censored-data fit
(``scipy.stats.CensoredData.interval_censored`` with ``rv_continuous.fit``):

- ``fixed``: one value inside every bracket, when one exists (their intersection's midpoint);
  it then explains every observation perfectly and, with one parameter, wins;
- ``uniform``: ``low``, ``high``;
- ``lognormal``: ``median`` (scipy's ``scale``), ``sigma`` (``s``), location 0.

``auto`` takes ``fixed`` when the brackets allow it, else the likelier of the other two.
Fit quality: the mean log-likelihood per observation, and the Kolmogorov distance between the
fitted CDF and the bracket midpoints (finite brackets), beside the mean bracket width (the
resolution the polls gave). scipy is the ``calibrate`` extra.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .brackets import Bracket

DISTS = ("fixed", "uniform", "lognormal")
INSTALL_HINT = "calibrate fits with scipy: pip install 'image-task-emulator[calibrate]'"


class FittingUnavailable(RuntimeError):
    """scipy is not installed."""


@dataclass(frozen=True, slots=True)
class Fit:
    dist: str
    params: dict[str, float]
    samples: int
    #: Mean log-likelihood of one observation under the fit (0: every bracket certain).
    loglik: float
    #: Kolmogorov distance to the midpoints of the finite brackets (None: none finite).
    ks: float | None
    #: Mean width of the finite brackets, seconds.
    width: float

    def toml(self) -> str:
        """The inline table ``timing.toml`` takes."""
        parts = [f'dist = "{self.dist}"']
        parts += [f"{name} = {value:.3f}" for name, value in self.params.items()]
        return "{" + ", ".join(parts) + "}"

    def quantile(self, p: float) -> float:
        """The duration below which a share ``p`` (0 < p < 1) of tasks end, under the fit."""
        if self.dist == "fixed":
            return self.params["value"]
        if self.dist == "uniform":
            return self.params["low"] + p * (self.params["high"] - self.params["low"])
        z = statistics.NormalDist().inv_cdf(p)
        return self.params["median"] * math.exp(self.params["sigma"] * z)

    def describe(self) -> str:
        return ", ".join(
            f"{name} {value:.3g}" + ("" if name == "sigma" else " s")
            for name, value in self.params.items()
        )


def _scipy() -> Any:
    try:
        from scipy import stats
    except ImportError:
        raise FittingUnavailable(INSTALL_HINT) from None
    return stats


def _cdf(dist: str, params: dict[str, float]) -> Callable[[float], float]:
    if dist == "fixed":
        value = params["value"]
        return lambda x: 1.0 if x >= value else 0.0
    if dist == "uniform":
        low, high = params["low"], params["high"]
        span = max(high - low, 1e-12)
        return lambda x: min(1.0, max(0.0, (x - low) / span))
    median, sigma = params["median"], max(params["sigma"], 1e-9)

    def lognormal(x: float) -> float:
        if x <= 0:
            return 0.0
        if math.isinf(x):
            return 1.0
        return 0.5 * (1.0 + math.erf(math.log(x / median) / (sigma * math.sqrt(2.0))))

    return lognormal


def _quality(
    dist: str, params: dict[str, float], brackets: list[Bracket]
) -> tuple[float, float | None]:
    cdf = _cdf(dist, params)
    total = 0.0
    for b in brackets:
        mass = cdf(b.high) - cdf(b.low)
        total += math.log(mass) if mass > 1e-300 else -690.0
    mids = sorted((b.low + b.high) / 2 for b in brackets if math.isfinite(b.high))
    ks = None
    if mids:
        n = len(mids)
        ks = max(max(abs(cdf(x) - (i + 1) / n), abs(cdf(x) - i / n)) for i, x in enumerate(mids))
    return total / len(brackets), ks


def _fixed(brackets: list[Bracket]) -> dict[str, float] | None:
    low = max(b.low for b in brackets)
    high = min(b.high for b in brackets)
    if not low < high or math.isinf(high):
        return None
    return {"value": (low + high) / 2}


def _scipy_fit(dist: str, brackets: list[Bracket]) -> dict[str, float] | None:
    stats = _scipy()
    lows = [b.low for b in brackets]
    highs = [b.high for b in brackets]
    data = stats.CensoredData.interval_censored(lows, highs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's optimiser warns on flat stretches
        try:
            if dist == "uniform":
                loc, scale = stats.uniform.fit(data)
                result = {"low": float(loc), "high": float(loc + scale)}
            else:
                s, _, scale = stats.lognorm.fit(data, floc=0)
                result = {"median": float(scale), "sigma": float(s)}
        except (ValueError, RuntimeError, FloatingPointError):
            return None
    if not all(math.isfinite(v) for v in result.values()):
        return None
    if dist == "uniform":
        result["low"] = max(0.0, result["low"])
    return result


def fit(brackets: list[Bracket], dist: str = "auto") -> Fit | None:
    """The fitted duration (None: nothing could be fitted: no bracket, or no finite one)."""
    if not brackets or all(math.isinf(b.high) for b in brackets):
        return None
    finite = [b.width for b in brackets if math.isfinite(b.high)]
    width = sum(finite) / len(finite)
    candidates: list[tuple[str, dict[str, float]]] = []
    for name in DISTS if dist == "auto" else (dist,):
        params = _fixed(brackets) if name == "fixed" else _scipy_fit(name, brackets)
        if params is None and name == "fixed" and dist == "fixed":
            mids = [(b.low + b.high) / 2 for b in brackets if math.isfinite(b.high)]
            params = {"value": sorted(mids)[len(mids) // 2]}  # asked for: the median midpoint
        if params is not None:
            candidates.append((name, params))
            if dist == "auto" and name == "fixed":
                break  # every bracket agrees on one value: the simplest fit explains all
    if not candidates:
        return None
    scored = [(name, params, *_quality(name, params, brackets)) for name, params in candidates]
    name, params, loglik, ks = max(scored, key=lambda item: item[2])
    rounded = {key: round(value, 3) for key, value in params.items()}
    return Fit(name, rounded, len(brackets), loglik, ks, width)


__all__ = ["DISTS", "INSTALL_HINT", "Fit", "FittingUnavailable", "fit"]
