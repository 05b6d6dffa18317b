"""A task's draws from one keyed hash (emulator.core.draws): deterministic per key, in range,
a stream that never ends, and distributed as the draws they replace. The distribution tests
run over fixed sets of keys, so they are deterministic (never flaky): each bound is several
standard deviations wide, and a broken draw (a constant, a wrong scale, a lost bit) misses it.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import struct
from hashlib import blake2b
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.core.draws import KeyedDraws
from emulator.core.faults import Effect, FaultRule, fires
from emulator.core.tasks import ScheduleBuilder, fate
from emulator.core.timing import Duration

from .conftest import Client

KEYS = [f"7:task_{n:032x}" for n in range(20_000)]


def _words(key: str, block: int) -> tuple[int, ...]:
    """Block ``block`` of ``key`` as the module documents it, written out independently."""
    digest = blake2b(key.encode(), digest_size=64, person=block.to_bytes(16, "little")).digest()
    return struct.unpack("<8Q", digest)


def _mixed(draws: KeyedDraws) -> list[float]:
    """Every kind of draw, past the first block's eight words."""
    out: list[float] = []
    for _ in range(4):
        out += [draws.random(), draws.gauss(2.0, 0.5), draws.randint(0, 99)]
        out += [draws.getrandbits(63), draws.gauss(0.0, 1.0), draws.randint(-5, 5)]
    return out


def test_the_same_key_gives_the_same_draws_and_another_key_others() -> None:
    key = "1234:task_000000000000000000000000000000ab"
    assert _mixed(KeyedDraws(key)) == _mixed(KeyedDraws(key))
    other = _mixed(KeyedDraws("1234:task_000000000000000000000000000000ac"))
    assert all(a != b for a, b in zip(_mixed(KeyedDraws(key)), other, strict=True) if a == a)
    assert _mixed(KeyedDraws("1235:task_000000000000000000000000000000ab")) != _mixed(
        KeyedDraws(key)
    )


def test_the_words_are_the_keys_blake2b_then_its_next_blocks_without_end() -> None:
    key = "99:task_0123456789abcdef0123456789abcdef"
    draws = KeyedDraws(key)
    got = [draws.getrandbits(64) for _ in range(40)]  # five blocks
    assert got[:8] == list(struct.unpack("<8Q", blake2b(key.encode()).digest()))
    assert got == [word for block in range(5) for word in _words(key, block)]
    assert len(set(got)) == 40  # no block repeats another


def test_random_is_a_words_top_53_bits_and_getrandbits_its_top_bits() -> None:
    key = "5:task_x"
    words = _words(key, 0) + _words(key, 1)
    draws = KeyedDraws(key)
    assert draws.random() == (words[0] >> 11) / 2**53
    assert draws.getrandbits(63) == words[1] >> 1
    assert draws.getrandbits(1) == words[2] >> 63
    assert draws.getrandbits(0) == 0  # a word is still used: the next draw takes words[4]
    assert [draws.getrandbits(64) for _ in range(12)] == list(words[4:16])


def test_gauss_is_the_stdlibs_formula_over_our_random_and_keeps_its_second_value() -> None:
    class Fed(random.Random):
        """The stdlib's ``gauss`` fed our ``random()`` values."""

        def __init__(self, values: list[float]) -> None:
            super().__init__(0)
            self.values = iter(values)

        def random(self) -> float:
            return next(self.values)

    for key in KEYS[:500]:
        plain = KeyedDraws(key)
        values = [plain.random() for _ in range(6)]
        ours, theirs = KeyedDraws(key), Fed(values)
        for mu, sigma in ((0.0, 1.0), (3.0, 0.3), (-1.0, 2.5), (0.0, 1.0), (5.0, 0.1)):
            got, expected = ours.gauss(mu, sigma), theirs.gauss(mu, sigma)
            assert got.hex() == expected.hex(), key
        # five gausses: three pairs drawn, the last value kept; the next draw is the seventh
        after = KeyedDraws(key)
        for _ in range(6):
            after.random()
        assert ours.random() == after.random()


def test_randint_draws_again_in_the_incomplete_last_run_of_words() -> None:
    size = 2**63 + 1  # words at or above 2**63 + 1 (about half) fall in the incomplete run
    redrawn = 0
    for key in KEYS[:200]:
        words = _words(key, 0) + _words(key, 1)
        first = next(w for w in words if w < size)
        redrawn += first != words[0]
        assert KeyedDraws(key).randint(10, 10 + size - 1) == 10 + first
    assert 60 < redrawn < 140
    assert KeyedDraws(KEYS[0]).randint(0, 2**64 - 1) == _words(KEYS[0], 0)[0]


@pytest.mark.parametrize(("a", "b"), [(5, 4), (0, 2**64), (-(2**70), 2**70)])
def test_randint_refuses_an_empty_or_too_wide_range(a: int, b: int) -> None:
    with pytest.raises(ValueError, match=r"randint: the range .* must hold 1 to 2\*\*64"):
        KeyedDraws("1:x").randint(a, b)


@pytest.mark.parametrize("k", [-1, 65, 128])
def test_getrandbits_refuses_more_than_64_bits(k: int) -> None:
    with pytest.raises(ValueError, match="getrandbits: k must be 0 to 64 bits"):
        KeyedDraws("1:x").getrandbits(k)


@given(
    key=st.text(max_size=200),
    low=st.integers(-(2**70), 2**70),
    span=st.integers(0, 2**64 - 1),
    k=st.integers(0, 64),
    skip=st.integers(0, 20),
)
def test_every_draw_is_in_its_range_for_any_key(
    key: str, low: int, span: int, k: int, skip: int
) -> None:
    draws = KeyedDraws(key)
    for _ in range(skip):  # from any word of any block
        draws.getrandbits(64)
    assert 0.0 <= draws.random() < 1.0
    assert low <= draws.randint(low, low + span) <= low + span
    assert 0 <= draws.getrandbits(k) < 2**k
    assert math.isfinite(draws.gauss(0.0, 1.0)) and math.isfinite(draws.gauss(0.0, 1.0))


def test_random_over_fixed_keys_is_uniform() -> None:
    values = [KeyedDraws(key).random() for key in KEYS]
    # the mean's standard deviation is 0.289 / sqrt(20,000) = 0.002
    assert abs(statistics.fmean(values) - 0.5) < 0.01
    buckets = [0] * 10
    for value in values:
        buckets[int(value * 10)] += 1
    # 2,000 a bucket expected, standard deviation 42: within 4.8 of them
    assert all(1_800 < count < 2_200 for count in buckets), buckets
    assert len(set(values)) == len(values)


def test_gauss_over_fixed_keys_has_the_asked_mean_and_deviation() -> None:
    values = []
    for key in KEYS:
        draws = KeyedDraws(key)
        values += [draws.gauss(3.0, 2.0), draws.gauss(3.0, 2.0)]  # both of a pair
    # 40,000 values: the mean's standard deviation is 0.01, the deviation's about 0.007
    assert abs(statistics.fmean(values) - 3.0) < 0.05
    assert abs(statistics.pstdev(values) - 2.0) < 0.04
    within = sum(abs(v - 3.0) < 2.0 for v in values) / len(values)
    assert abs(within - 0.6827) < 0.01  # one sigma: a normal's shape, not only its moments


def test_a_failure_rate_of_0_3_fails_about_that_share_of_tasks_at_every_point() -> None:
    schedule = ScheduleBuilder(1.0, 2.0, "succeeded", None, None, None, 1, None)
    fates = [fate(schedule, KeyedDraws(key), None, 0.3) for key in KEYS[:10_000]]
    failed = [s for s in fates if s.outcome == "failed"]
    # 3,000 expected, standard deviation 46
    assert 2_800 < len(failed) < 3_200
    # the failure point is drawn over 0..99 percent of processing: end_s = 1.0 + 2.0 * at / 100
    points = {round((s.end_s or 0.0) - 1.0, 6) for s in failed}
    assert len(points) == 100 and min(points) == 0.0 and max(points) == 1.98
    calm = [fate(schedule, KeyedDraws(key), None, 0.0) for key in KEYS[:1_000]]
    assert all(s.outcome == "succeeded" for s in calm)


def test_a_wide_lognormal_meets_both_clamps_and_stays_within_them() -> None:
    duration = Duration("lognormal", 15.0, 2.5)
    values = [duration.draw(KeyedDraws(key)) for key in KEYS]
    assert min(values) == 15.0 / 4 and max(values) == 15.0 * 4
    # P(|N(0, 2.5)| > ln 4) = 0.578 clamped, half below the median; standard deviations 0.0035
    clamped = sum(v in (15.0 / 4, 15.0 * 4) for v in values) / len(values)
    assert abs(clamped - 0.578) < 0.015
    assert abs(sum(v < 15.0 for v in values) / len(values) - 0.5) < 0.02


def test_a_fault_of_probability_0_25_fires_about_that_share_of_evaluations() -> None:
    rule = FaultRule("r1", Effect("drop"), probability=0.25)
    hits = [fires(42, rule, evaluation) for evaluation in range(10_000)]
    assert 2_350 < sum(hits) < 2_650  # 2,500 expected, standard deviation 43
    assert hits == [fires(42, rule, evaluation) for evaluation in range(10_000)]
    assert hits != [fires(43, rule, evaluation) for evaluation in range(10_000)]
    assert hits == [
        KeyedDraws(f"42:fault:r1:{evaluation}").random() < 0.25 for evaluation in range(10_000)
    ]


def test_a_submitted_tasks_schedule_and_picture_seed_come_from_its_keyed_draws(
    make_client: Any,
) -> None:
    client: Client = make_client(seed=31, failure_rate=0.5)
    emulator = client.app.state.emulator  # type: ignore[attr-defined]
    payloads = [
        {"model": "NanoBanana2-0.5K", "prompt": "a cat"},
        {"model": "gpt-image-2", "prompt": "a dog", "size": "1024x1024", "n": 4},
    ]
    for payload in payloads * 10:
        response = client.submit(payload)
        assert response.status_code == 200, response.text
        task = asyncio.run(emulator.store.get_task(response.json()["data"]["task_id"]))
        draws = KeyedDraws(f"31:{task.task_id}")
        queued, processing = emulator.config.timing.draw(
            draws, task.model, task.tier, task.quality, 1.0
        )
        schedule = fate(
            ScheduleBuilder(queued, processing, "succeeded", None, None, None, task.n, None),
            draws,
            None,
            0.5,
        )
        assert task.schedule == schedule
        assert task.seed == draws.getrandbits(63)
