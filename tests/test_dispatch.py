"""The direct dispatch of the hot routes (emulator/http/dispatch.py: submission, poll, result
download) answers exactly as Starlette's layers do: the same generated requests sent to an app
with it and to the same app without it (``direct_routes = False``) give the same status,
headers (in order), body, exception, scope and journal entries."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .dispatch_pair import JSON_TYPE, KEY, TOKEN, UNKNOWN_TOKEN, Pair, Sent
from .dispatch_requests import requests
from .listings import whole_journal


@pytest.fixture
def pair() -> Iterator[Pair]:
    made = Pair()
    yield made
    made.close()


def _submission(prompt: str) -> Sent:
    body = json.dumps({"model": "gpt-image-2", "prompt": prompt, "size": "1024x1024", "n": 2})
    headers = [(b"authorization", f"Bearer {KEY}".encode())]
    return Sent("POST", "/v1/images/tasks", headers=headers + JSON_TYPE, body=body.encode())


def _advance(seconds: float) -> Sent:
    body = json.dumps({"seconds": seconds}).encode()
    return Sent("POST", "/_emulator/clock/advance", headers=JSON_TYPE, body=body)


def test_generated_requests_answer_the_same_with_and_without_the_dispatch() -> None:
    served = {"direct": 0, "starlette": 0}

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        pair = Pair()
        try:
            # Tasks to poll first, moved on by a drawn time: a poll may find any status.
            for prompt in ("a cat", "doomed"):
                pair.send(_submission(prompt))
            pair.send(_advance(data.draw(st.sampled_from([1000, 0, 5, 20]))))
            for _ in range(data.draw(st.integers(1, 8))):
                if data.draw(st.sampled_from([False] * 4 + [True])):  # the manual clock moves on
                    pair.send(_advance(data.draw(st.sampled_from([1000, 1, 5, 30]))))
                got = pair.send(data.draw(requests(pair)))
                # Only Starlette's ExceptionMiddleware sets the first; a 431 sets neither.
                if "starlette.exception_handlers" in got.keys:
                    served["starlette"] += 1
                elif "app" in got.keys:
                    served["direct"] += 1
        finally:
            pair.close()

    check()
    # Both ways were taken, often: the comparison above is not of Starlette with itself.
    assert min(served.values()) >= 50, served


def test_a_poll_of_every_status_answers_the_same(pair: Pair) -> None:
    auth = [(b"authorization", f"Bearer {KEY}".encode())]
    for prompt in ("a cat", "doomed"):
        pair.send(_submission(prompt))
    assert len(pair.task_ids) == 2
    statuses = set()
    for _ in range(40):
        for task_id in pair.task_ids:
            for method in ("GET", "HEAD"):
                got = pair.send(Sent(method, f"/v1/images/tasks/{task_id}", headers=auth))
                statuses.add(json.loads(got.messages[1]["body"])["data"]["status"])
        pair.send(_advance(3))
    assert statuses == {"queued", "processing", "succeeded", "failed"}


def test_a_result_download_answers_the_same_and_is_served_by_the_dispatch(pair: Pair) -> None:
    for prompt in ("a cat", "doomed"):
        pair.send(_submission(prompt))
    cat, doomed = pair.task_ids
    pictures = sent = 0
    for seconds in (0, 1000):  # nothing to download yet, then one succeeded and one failed
        pair.send(_advance(seconds))
        for root_path in ("", "/api"):
            for method, task_id in itertools.product(("GET", "HEAD"), (cat, doomed, "task_x")):
                for token, name in itertools.product(
                    (TOKEN, UNKNOWN_TOKEN, TOKEN + "\n", TOKEN[:-1]),
                    ("0.png", "1.png", "2.png", "0.jpeg", "0.png\n", "0.png\n\n"),
                ):
                    path = f"{root_path}/_emulator/results/{task_id}/{token}/{name}"
                    got = pair.send(Sent(method, path, root_path, token_of=task_id))
                    sent += 1
                    # Served by the dispatch: Starlette's ExceptionMiddleware never ran.
                    assert "starlette.exception_handlers" not in got.keys
                    assert {"app", "route", "endpoint", "path_params"} <= got.keys
                    if got.messages[0]["status"] == 200:
                        pictures += 1
                        assert got.messages[1]["body"][:4] == b"\x89PNG"
    # The cat's two pictures, by GET and HEAD, with and without root_path.
    assert pictures == 8
    journal = pair.loop.run_until_complete(whole_journal(pair.direct.state.emulator.store))
    assert sum(entry["endpoint"] == "result" for entry in journal) == sent


def test_a_bug_answers_the_same_500_and_is_raised_on_both_paths(pair: Pair) -> None:
    auth = [(b"authorization", f"Bearer {KEY}".encode())]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a bug")

    for app in pair.apps:
        app.state.emulator.tasks.find = broken
    got = pair.send(Sent("GET", "/v1/images/tasks/task_x", headers=auth))
    assert got.raised == "ValueError: a bug"
    assert got.messages[0]["status"] == 500
    assert json.loads(got.messages[1]["body"])["code"] == "internal_error"
