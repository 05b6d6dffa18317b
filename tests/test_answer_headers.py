"""The answers of the hot routes (submission, poll, result download), made without
Starlette's general ``Response.__init__``, carry the headers Starlette would give them; a
terminal task's kept answer goes through the app's opt-in middleware like any answer (the
direct dispatch steps aside for it), and each poll's answer is its own: what a middleware adds
to one is not in the next."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import JSONResponse, Response

from emulator.http.api import _json_answer
from emulator.http.terminal import TerminalAnswers, kept_answer

from .conftest import MakeClient

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
