"""The answers of the hot routes (submission, poll, result download), made without
Starlette's general ``Response.__init__``, carry the headers Starlette would give them; a
terminal task's kept answer goes through the app's opt-in middleware like any answer (the
direct dispatch steps aside for it), and each poll's answer is its own: what a middleware adds
to one is not in the next."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.responses import JSONResponse, Response

from emulator.core.tasks import QUEUED
from emulator.http import api
from emulator.http.api import _json_answer, queued_template, task_body
from emulator.http.terminal import TerminalAnswers, kept_answer

from .conftest import Client, MakeClient

NANO = {"model": "NanoBanana2-0.5K", "prompt": "x"}


def test_cors_headers_are_added_once_to_every_poll_of_a_finished_task(
    make_client: MakeClient,
) -> None:
    origin = "http://localhost:5173"
    client = make_client(cors_origins=[origin])
    task_id = client.submit_ok(NANO)
    client.advance(10_000)
    polls = [
        client.get(f"/v1/images/tasks/{task_id}", headers={"Origin": origin}) for _ in range(3)
    ]
    assert polls[0].json()["data"]["status"] == "succeeded"
    headers = [poll.headers.multi_items() for poll in polls]
    assert headers[0] == headers[1] == headers[2]
    assert [name for name, _ in headers[0]].count("access-control-allow-origin") == 1


@pytest.mark.parametrize("status", [200, 202, 201, 204, 304, 100, 404, 500])
@pytest.mark.parametrize("content", [{"a": "é", "n": [1, 2.5, None]}, [], "x" * 300])
def test_json_answers_have_starlettes_headers_in_its_order(status: int, content: Any) -> None:
    ours = _json_answer(content, status_code=status)
    theirs = JSONResponse(content, status_code=status)
    assert (
        ours.raw_headers == Response(ours.body, status, media_type="application/json").raw_headers
    )
    assert [name for name, _ in ours.raw_headers] == [name for name, _ in theirs.raw_headers]
    assert (ours.status_code, ours.background) == (theirs.status_code, theirs.background)


def test_a_kept_answer_has_starlettes_headers_and_a_list_of_its_own() -> None:
    answers = TerminalAnswers()
    kept = answers.keep("k", b'{"x":1}', "application/json")
    first, second = kept_answer(kept), kept_answer(answers.get("k") or kept)
    expected = Response(b'{"x":1}', media_type="application/json")
    assert (first.status_code, first.body, first.raw_headers, first.background) == (
        expected.status_code,
        expected.body,
        expected.raw_headers,
        expected.background,
    )
    first.raw_headers.append((b"x-added", b"1"))
    assert second.raw_headers == expected.raw_headers


@pytest.mark.parametrize("output_format", ["png", "jpeg"])
def test_a_result_picture_has_starlettes_headers_in_its_order(
    make_client: MakeClient, output_format: str
) -> None:
    client = make_client()
    body = {**NANO, "output_format": output_format}
    task_id = client.submit_ok(body)
    client.advance(10_000)
    url = client.get(f"/v1/images/tasks/{task_id}").json()["data"]["result_url"]
    for method in ("GET", "HEAD"):
        answer = client.request(method, url)
        assert answer.status_code == 200
        expected = Response(
            answer.content or b"x" * int(answer.headers["content-length"]),
            media_type=f"image/{output_format}",
            headers={"Cache-Control": "no-cache"},
        )
        assert answer.headers.raw == expected.raw_headers


SHAPES = [
    {"envelope": envelope, "error_shape": shape, "always_list_results": listed, "submit_status": s}
    for envelope in ("wrapped", "bare")
    for shape in ("object", "string")
    for listed in (False, True)
    for s in (200, 202)
]


def _queued_answer(client: Client, task_id: str, host: str) -> Response:
    """The answer a submission of ``task_id`` gets, encoded whole by the general path."""
    emulator = client.app.state.emulator  # type: ignore[attr-defined]
    task = asyncio.run(emulator.store.get_task(task_id))
    settings = emulator.config.settings
    body = api.task_body(settings, emulator.results, task, QUEUED, f"http://{host}/")
    return _json_answer(body, status_code=settings.submit_status)


def _task_id(answer: Any) -> str:
    body = answer.json()
    task_id: str = body.get("data", body)["task_id"]
    return task_id


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "-".join(map(str, shape.values())))
@pytest.mark.parametrize("payload", [NANO, {**NANO, "image": "https://example.com/a.png"}])
def test_a_submissions_answer_is_its_queued_task_body_encoded_whole(
    make_client: MakeClient, shape: dict[str, Any], payload: dict[str, Any]
) -> None:
    client = make_client(**shape)
    for host in ("testserver", "other.example", "testserver"):
        answer = client.submit(payload, headers={"Host": host})
        expected = _queued_answer(client, _task_id(answer), host)
        assert (answer.status_code, answer.content) == (expected.status_code, expected.body)
        assert answer.headers.raw == expected.raw_headers


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "-".join(map(str, shape.values())))
@pytest.mark.parametrize("task_type", ["text2image", "image2image"])
def test_a_queued_answer_reads_only_the_tasks_id_and_type(
    make_client: MakeClient, shape: dict[str, Any], task_type: str
) -> None:
    """Else every submission's answer would be encoded whole: right, but at ten times the
    cost (the template is made from task_body with a stand-in holding only those two)."""
    emulator = make_client(**shape).app.state.emulator  # type: ignore[attr-defined]
    settings = emulator.config.settings
    assert queued_template(settings, emulator.results, task_type, "http://h/") is not None


def test_a_queued_answer_that_reads_more_of_the_task_is_encoded_whole(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def with_model(*args: Any) -> dict[str, Any]:
        body = task_body(*args)
        body["data"]["model"] = args[2].model
        return body

    monkeypatch.setattr(api, "task_body", with_model)
    client = make_client()
    emulator = client.app.state.emulator  # type: ignore[attr-defined]
    assert queued_template(emulator.config.settings, emulator.results, "text2image", "x") is None
    for model in ("NanoBanana2-0.5K", "NanoBanana2-1K"):
        answer = client.submit({"model": model, "prompt": "x"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["model"] == model
        assert answer.content == _queued_answer(client, _task_id(answer), "testserver").body


def test_a_submissions_answer_follows_the_settings_changed_at_run_time(
    make_client: MakeClient,
) -> None:
    client = make_client()
    first = client.submit(NANO)
    assert first.json()["data"]["status"] == "queued"
    patched = client.patch("/_emulator/config", json={"envelope": "bare", "submit_status": 202})
    assert patched.status_code == 200, patched.text
    second = client.submit(NANO)
    assert second.status_code == 202
    assert second.json()["status"] == "queued"
    assert second.content == _queued_answer(client, _task_id(second), "testserver").body
