"""What a conform run costs a paid service: GET only by default, at most ``--max-tasks`` tasks
whatever sends them (the scenarios first), nothing for a refusal, the rate limit kept, and the
key never sent to a result URL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.types import Scope

from emulator.conform import EXIT_DEVIATIONS, EXIT_OK

from .conform_support import (
    CAREFUL,
    SECOND_KEY,
    Answer,
    Servers,
    json_request_edit,
    run_conform,
)


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    with Servers() as servers:
        yield servers.start


def conform(capsys: pytest.CaptureFixture[str], base_url: str, *extra: str) -> tuple[int, str]:
    return run_conform(base_url, *extra, capture=lambda: capsys.readouterr().out)


def _tasks(base_url: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = httpx.get(f"{base_url}/_emulator/tasks").json()["tasks"]
    return tasks


def test_default_run_against_a_live_service_only_reads(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve()
    code, out = conform(capsys, url, "--max-examples", "3")
    assert code == EXIT_OK, out
    assert "GET only" in out
    journal = httpx.get(f"{url}/_emulator/requests").json()["requests"]
    assert journal and {entry["method"] for entry in journal} == {"GET"}
    # What needs a submission is listed as not checked, not passed.
    assert "near_miss_refused @ POST /v1/images/tasks: needs --allow-generation" in out


def test_careful_run_spends_its_budget_on_the_scenarios_first(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve()
    code, out = conform(capsys, url, *CAREFUL, "--second-api-key", SECOND_KEY)
    assert code == EXIT_OK, out
    tasks = _tasks(url)
    assert [(t["task"]["model"], t["task"]["n"]) for t in tasks] == [
        ("NanoBanana2-0.5K", 1),
        ("gpt-image-2", 2),
        ("NanoBanana2-0.5K", 1),
    ]
    assert [t["task"]["task_type"] for t in tasks] == ["text2image", "text2image", "image2image"]
    # Each was polled to its end, then a few times more.
    assert all(t["task"]["polls"] >= 3 + 2 for t in tasks), [t["task"]["polls"] for t in tasks]
    assert "3 task(s) created" in out


def test_a_scenario_waiting_for_a_picture_keeps_its_place_in_the_budget(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # --full plans more scenarios than 3 tasks pay for; the image2image one (third) waits for
    # the first picture, and the ones after it must not take its task meanwhile.
    url = serve()
    code, out = conform(capsys, url, "--full", "--max-tasks", "3", "--phases", "examples")
    assert code == EXIT_OK, out
    made = [(t["task"]["model"], t["task"]["task_type"]) for t in _tasks(url)]
    assert made == [
        ("NanoBanana2-0.5K", "text2image"),
        ("gpt-image-2", "text2image"),
        ("NanoBanana2-0.5K", "image2image"),
    ]


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_a_careful_run_never_creates_more_than_max_tasks(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str], budget: int
) -> None:
    # A service that accepts every near miss (quietly fixing it): each costs a task.
    def accept_everything(body: dict[str, Any], scope: Scope) -> None:
        body.update(model="NanoBanana2-0.5K", prompt=body.get("prompt") or "x", n=1)
        for field in ("size", "aspect_ratio", "quality", "task_type", "output_format"):
            body.pop(field, None)

    url = serve(request=json_request_edit(accept_everything))
    code, out = conform(capsys, url, *CAREFUL, "--max-tasks", str(budget))
    assert code == EXIT_DEVIATIONS, out
    assert len(_tasks(url)) == budget, out
    assert f"{budget} task(s) created" in out
    assert "near miss" in out and "(task budget spent)" in out


def test_generation_run_creates_at_most_max_tasks_of_the_cheapest_models(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve()
    code, out = conform(capsys, url, "--allow-generation", "--max-tasks", "2")
    assert code == EXIT_OK, out
    tasks = _tasks(url)
    assert len(tasks) == 2
    assert {(t["task"]["model"], t["task"].get("quality")) for t in tasks} <= {
        ("NanoBanana2-0.5K", None),
        ("gpt-image-2", "low"),
    }
    assert "schemathesis' submissions: the task budget went to" in out


def test_submissions_are_refused_before_they_cost_anything(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Near misses a faithful service refuses cost nothing: the whole budget reaches scenarios.
    url = serve()
    code, out = conform(capsys, url, *CAREFUL)
    assert code == EXIT_OK, out
    journal = httpx.get(f"{url}/_emulator/requests").json()["requests"]
    posts = [e for e in journal if e["method"] == "POST" and e["path"] == "/v1/images/tasks"]
    assert len([e for e in posts if e["status"] == 200]) == 3
    assert len([e for e in posts if e["status"] in (400, 401)]) >= 10


def test_a_rate_limited_request_is_retried_not_judged(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Every other refusal comes back as a 429 first (a refusal: no task was made either way).
    turns = iter(range(1_000_000))

    def limit(scope: Scope, request: bytes, answer: Answer) -> Answer:
        if answer[0] in (400, 401, 404) and next(turns) % 2 == 0:
            body = {"code": "rate_limited", "message": "slow down", "data": None}
            headers = [(b"content-type", b"application/json"), (b"retry-after", b"0")]
            return 429, headers, json.dumps(body).encode()
        return answer

    code, out = conform(capsys, serve(limit), *CAREFUL, "--phases", "examples")
    assert code == EXIT_OK, out
    assert "no deviations" in out


def test_a_result_url_is_fetched_without_the_key(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[bytes | None] = []

    def spy(scope: Scope, request: bytes, answer: Answer) -> Answer:
        if any(k == b"content-type" and v.startswith(b"image/") for k, v in answer[1]):
            seen.append(dict(scope["headers"]).get(b"authorization"))
        return answer

    code, out = conform(capsys, serve(spy), *CAREFUL)
    assert code == EXIT_OK, out
    assert len(seen) == 4 and set(seen) == {None}  # 1 + 2 + 1 pictures, no key sent
