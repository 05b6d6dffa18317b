"""Durations drawn from a task's RNG: the same floats, and the same draws from the RNG, as the
stdlib's calls they were first written with (same seed, same schedules)."""

from __future__ import annotations

import math
import random

import pytest

from emulator.core.timing import Duration, Timing


def _as_written(duration: Duration, rng: random.Random) -> float:
    """The draw as first written, with the stdlib's ``uniform``, ``min`` and ``max``."""
    a, b = duration.a, duration.b
    if duration.dist == "fixed":
        value = a
    elif duration.dist == "uniform":
        value = rng.uniform(a, b)
    else:
        value = min(a * 4, max(a / 4, a * math.exp(rng.gauss(0, b))))
    return max(0.0, value)


DURATIONS = [
    Duration("fixed", 2.5),
    Duration("fixed", 0.0),
    Duration("fixed", -1.0),
    Duration("uniform", 0.5, 3.0),
    Duration("uniform", 0.0, 0.0),
    Duration("uniform", -2.0, 1.0),
    Duration("lognormal", 8.0, 0.3),
    Duration("lognormal", 15.0, 2.5),  # wide: the clamps at a / 4 and a * 4 are met often
    Duration("lognormal", 0.0, 0.3),
    Duration("lognormal", -4.0, 1.0),
]


@pytest.mark.parametrize("duration", DURATIONS, ids=repr)
def test_a_duration_draws_the_same_floats_and_rng_draws_as_first_written(
    duration: Duration,
) -> None:
    for seed in range(2000):
        ours, theirs = random.Random(f"7:task_{seed:032x}"), random.Random(f"7:task_{seed:032x}")
        for _ in range(3):  # gauss keeps its second value for the next call
            got, expected = duration.draw(ours), _as_written(duration, theirs)
            assert got.hex() == expected.hex(), (seed, got, expected)
        assert ours.getstate() == theirs.getstate()


def test_a_tasks_two_durations_are_drawn_as_first_written_for_every_entry() -> None:
    timing = Timing.load()
    keys = [[*key.split("/"), "", ""][:3] for key in timing.entries]
    for seed in range(300):
        for model, tier, quality in [(m, t or None, q or None) for m, t, q in keys]:
            ours, theirs = random.Random(f"1:{seed}"), random.Random(f"1:{seed}")
            for scale in (1.0, 0.05, 0.0):
                queued, processing = timing.durations(model, tier, quality)
                expected = (
                    _as_written(queued, theirs) * scale,
                    _as_written(processing, theirs) * scale,
                )
                got = timing.draw(ours, model, tier, quality, scale)
                assert [x.hex() for x in got] == [x.hex() for x in expected]
            assert ours.getstate() == theirs.getstate()
