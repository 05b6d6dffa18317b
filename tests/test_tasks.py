"""The life cycle is a pure function of the schedule and elapsed time."""

from __future__ import annotations

import dataclasses
import itertools
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.core.billing import Charge, ChargeBuilder
from emulator.core.catalogue import Catalogue
from emulator.core.frozen import builder
from emulator.core.tasks import (
    Schedule,
    ScheduleBuilder,
    Task,
    TaskBuilder,
    observe,
    per_poll_elapsed,
)
from emulator.usecases import submission
from emulator.usecases.submission import Submission

ORDER = {"queued": 0, "processing": 1, "succeeded": 2, "failed": 2}


def test_task_is_queued_then_processing_then_succeeded() -> None:
    s = Schedule(queued_s=2, processing_s=10)
    assert (observe(s, 0).status, observe(s, 0).progress) == ("queued", 0)
    assert (observe(s, 1.9).status, observe(s, 1.9).progress) == ("queued", 0)
    assert (observe(s, 7).status, observe(s, 7).progress) == ("processing", 50)
    assert (observe(s, 12).status, observe(s, 12).progress) == ("succeeded", 100)


def test_failure_at_a_progress_value_fails_there() -> None:
    s = Schedule(queued_s=2, processing_s=10).failing_at(40, "upstream_error", "boom")
    assert observe(s, 5.9).status == "processing"
    assert observe(s, 6).status == "failed"
    assert observe(s, 6).progress == 100


def test_failure_while_queued_never_shows_processing() -> None:
    s = Schedule(queued_s=4, processing_s=10).failing_at(None, "content_policy_violation", "no")
    assert observe(s, 1).status == "queued"
    assert observe(s, 2).status == "failed"


def test_zero_durations_finish_at_once() -> None:
    assert observe(Schedule(queued_s=0, processing_s=0), 0).status == "succeeded"


@given(
    queued=st.floats(0, 100),
    processing=st.floats(0, 100),
    fail=st.one_of(st.none(), st.integers(-1, 101)),
    times=st.lists(st.floats(0, 500), min_size=2, max_size=20),
)
def test_status_and_progress_never_go_backwards(
    queued: float, processing: float, fail: int | None, times: list[float]
) -> None:
    s = Schedule(queued_s=queued, processing_s=processing)
    if fail is not None:
        s = s.failing_at(None if fail < 0 else fail, "upstream_error", "x")
    seen = [observe(s, t) for t in sorted(times)]
    for before, after in itertools.pairwise(seen):
        assert ORDER[after.status] >= ORDER[before.status]
        assert after.progress >= before.progress
        if before.terminal:
            assert after == before
    for obs in seen:
        assert 0 <= obs.progress <= 100
        assert (obs.progress == 100) == obs.terminal


def test_per_poll_moves_one_step_per_poll() -> None:
    s = Schedule(queued_s=3, processing_s=30)
    states = [observe(s, per_poll_elapsed(s, k, steps=3)) for k in range(5)]
    assert [(o.status, o.progress) for o in states] == [
        ("queued", 0),
        ("processing", 33),
        ("processing", 66),
        ("succeeded", 100),
        ("succeeded", 100),
    ]


@given(
    queued=st.floats(0.0, 1e4, allow_nan=False),
    processing=st.floats(1e-3, 1e5, allow_nan=False),
    steps=st.integers(2, 1000),
    data=st.data(),
)
def test_per_poll_progress_after_poll_k_is_k_steps_whatever_the_durations(
    queued: float, processing: float, steps: int, data: st.DataObject
) -> None:
    # Poll k of `steps` shows k * 100 // steps percent: the float arithmetic of the elapsed
    # time (queued + processing * k / steps, then back) must not land it one percent short.
    s = Schedule(queued_s=queued, processing_s=processing)
    k = data.draw(st.integers(1, steps - 1))
    obs = observe(s, per_poll_elapsed(s, k, steps))
    assert (obs.status, obs.progress) == ("processing", k * 100 // steps)


@given(
    queued=st.floats(1e-3, 1e4, allow_nan=False),
    processing=st.floats(1e-3, 1e5, allow_nan=False),
    steps=st.integers(1, 1000),
    at=st.integers(1, 99),
)
def test_a_per_poll_failure_is_met_by_the_poll_that_reaches_its_point(
    queued: float, processing: float, steps: int, at: int
) -> None:
    # Poll k is at k / steps of the processing: the failure at `at` % is met by the first poll
    # with k / steps >= at / 100, never one poll later.
    s = Schedule(queued_s=queued, processing_s=processing, steps=steps)
    s = s.failing_at(at, "upstream_error", "")
    first = -(-at * steps // 100)
    assert s.end_poll == first
    assert observe(s, per_poll_elapsed(s, first, steps)).status == "failed"
    assert not observe(s, per_poll_elapsed(s, first - 1, steps)).terminal


def test_task_round_trips_through_plain_data() -> None:
    task = Task(
        task_id="task_" + "0" * 32,
        owner="abc",
        created_at=1.5,
        task_type="image2image",
        model="gpt-image-2",
        prompt="p",
        width=1024,
        height=768,
        output_format="webp",
        n=2,
        quality="low",
        tier="1K",
        aspect_ratio=None,
        size="1024x768",
        references=("https://example.com/a.png",),
        has_reference=False,
        seed=9,
        schedule=Schedule(1, 2).failing_at(10, "c", "m"),
        polls=3,
    )
    assert Task.from_dict(task.to_dict()) == task


def _built_alike(cls: type[Any], made: Any, *args: Any, **kwargs: Any) -> None:
    plain = cls(*args, **kwargs)
    assert type(made) is cls and made == plain and hash(made) == hash(plain)
    assert repr(made) == repr(plain) and pickle.loads(pickle.dumps(made)) == plain
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, first, getattr(made, first))
    assert dataclasses.replace(made) == plain


def test_each_builder_makes_what_its_frozen_class_makes() -> None:
    schedule = ScheduleBuilder(1.5, 2.5, images=2, steps=None)
    _built_alike(Schedule, schedule, 1.5, 2.5, images=2, steps=None)
    values = {
        **dict(task_id="task_1", owner="o", created_at=3.0, task_type="text2image"),
        **dict(model="m", prompt="p", width=8, height=8, output_format="png", n=2),
        **dict(quality=None, tier="1K", aspect_ratio="1:1", size="8x8", references=("u",)),
        **dict(has_reference=False, seed=7, schedule=schedule, token="t"),
    }
    _built_alike(Task, TaskBuilder(**values), **values)
    _built_alike(Task, TaskBuilder(*values.values()), *values.values())  # positional, defaults
    charge = ("task_1", "o", "sk-…", 3.0, "m", "1K", None, 2, 5, 10)
    _built_alike(Charge, ChargeBuilder(*charge), *charge)
    plan = Catalogue.load().plan(
        model="NanoBanana", size=None, aspect_ratio=None, quality=None, n=1, output_format=None
    )
    fields = dict(prompt="p", task_type="text2image", plan=plan, references=(), picture=None)
    _built_alike(Submission, submission._SubmissionBuilder(**fields, urls=()), **fields, urls=())


def test_a_builder_refuses_a_class_it_cannot_copy_faithfully() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True)
    class WithoutSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    for cls in (Mutable, WithoutSlots, Derived):
        with pytest.raises(TypeError, match="builder"):
            builder(cls)


@dataclasses.dataclass(frozen=True, slots=True)
class Mixed:
    a: int
    b: int = dataclasses.field(default=2, kw_only=True)
    c: int = 3


def test_a_builder_keeps_keyword_only_fields_keyword_only() -> None:
    built = builder(Mixed)
    _built_alike(Mixed, built(1, 4, b=5), 1, 4, b=5)
    with pytest.raises(TypeError):
        built(1, 2, 3)  # as Mixed(1, 2, 3) does: b is keyword-only
