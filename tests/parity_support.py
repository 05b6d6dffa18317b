"""A small service and cassettes written line by line, for what ``parity`` and ``conform
--cassette`` must do with answers no emulator gives.

`service` answers like the relay (the wrapped envelope: queued at submission, processing at
the first poll, succeeded from the second on, a 404 ``task_not_found`` for an unknown task)
unless a ``drift`` changes one thing. `write_cassette` writes a cassette whose lines are what
that service answered (`recorded`), through the recorder's own writer.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from emulator.recording.cassette import CassetteWriter, Exchange

SUBMISSION = {"model": "gpt-image-2", "prompt": "a blue sphere", "size": "1024x768"}
KEY_ID = "4f7df253124c"
#: Seconds between two bytes of a dripping answer (the deadline under test is 1 s).
DRIP = 0.2
#: Bytes dripped before a poll's dripping answer ends (``drip_polls``): 8 s of them, far past
#: the 1 s deadline, yet finite, so a deadline that fails to cut makes a test fail, not hang.
POLL_DRIPS = 40


def task(task_id: str, status: str, progress: str, *, drift: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {
        "task_id": task_id,
        "status": status,
        "progress": progress,
        "created_at": "2023-11-14T22:13:20Z" if drift == "time_str" else 1700000000,
        "metadata": {"task_type": "text2image", "result_count": 1 if status == "succeeded" else 0},
    }
    if status == "succeeded":
        found["result_url"] = f"https://cdn.example/{task_id}/0.png"
    return found


def wrapped(data: Any) -> dict[str, Any]:
    return {"code": "success", "message": "", "data": data}


def not_found(task_id: str, code: str = "task_not_found") -> dict[str, Any]:
    return {"code": code, "message": f"task {task_id} not found", "data": None}


def service(drift: str = "") -> Starlette:
    """The relay, with one ``drift``: ``code`` (an unknown task is ``task_gone``), ``time_str``
    (``created_at`` a text), ``noprocessing`` (no poll answers processing), ``poll500`` (every
    poll a 500 in text), ``drip`` (the submission's answer a byte every DRIP s, endlessly),
    ``huge`` (the submission's answer 32 MiB of JSON, streamed without a length),
    ``drip_polls`` (a poll's answer a byte every DRIP s, POLL_DRIPS of them, then the task;
    ``app.state.drips_ended`` lists each that ran to its end) and ``huge_polls`` (a poll's
    answer as ``huge``)."""
    counter = itertools.count(1)
    polls: dict[str, int] = {}
    drips_ended: list[str] = []

    async def submit(request: Request) -> Response:
        task_id = f"task_{next(counter):06d}"
        polls[task_id] = 0
        if drift == "drip":
            return StreamingResponse(_drip(), media_type="application/json")
        if drift == "huge":
            return StreamingResponse(_huge(), media_type="application/json")
        return JSONResponse(wrapped(task(task_id, "queued", "0%", drift=drift)))

    async def poll(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        if task_id not in polls:
            code = "task_gone" if drift == "code" else "task_not_found"
            return JSONResponse(not_found(task_id, code), 404)
        if drift == "poll500":
            return Response(b"oops", status_code=500, media_type="text/plain")
        if drift == "huge_polls":
            return StreamingResponse(_huge(), media_type="application/json")
        polls[task_id] += 1
        first = polls[task_id] == 1 and drift != "noprocessing"
        status, progress = ("processing", "40%") if first else ("succeeded", "100%")
        answer = wrapped(task(task_id, status, progress, drift=drift))
        if drift == "drip_polls":
            return StreamingResponse(_drip_then(answer, drips_ended), media_type="application/json")
        return JSONResponse(answer)

    app = Starlette(
        routes=[
            Route("/v1/images/tasks", submit, methods=["POST"]),
            Route("/v1/images/tasks/{task_id}", poll, methods=["GET"]),
        ]
    )
    app.state.drips_ended = drips_ended
    return app


async def _drip() -> AsyncIterator[bytes]:
    yield b'{"code":"success"'
    while True:  # until the client leaves (uvicorn then stops the stream)
        await anyio.sleep(DRIP)
        yield b" "


async def _drip_then(answer: Any, ended: list[str]) -> AsyncIterator[bytes]:
    """POLL_DRIPS spaces, one every DRIP s, then ``answer``: a complete answer, but late. A
    client that leaves stops the stream (uvicorn cancels it), so nothing reaches ``ended``."""
    for _ in range(POLL_DRIPS):
        yield b" "
        await anyio.sleep(DRIP)
    ended.append(answer["data"]["task_id"])
    yield json.dumps(answer).encode()


async def _huge() -> AsyncIterator[bytes]:
    yield b'{"x":"'
    for _ in range(512):
        yield b"a" * 65536
    yield b'"}'


def exchange(kind: str, path: str, status: int, body: Any, task_id: str | None) -> Exchange:
    """One recorded line: a keyed JSON submission or poll and its JSON answer."""
    headers = {"authorization": "Bearer ***", "accept": "*/*"}
    if kind == "submit":
        headers["content-type"] = "application/json"
    return Exchange(
        line=0,
        kind=kind,
        t=1796080619.0,
        method="POST" if kind == "submit" else "GET",
        path=path,
        request_headers=headers,
        key_id=KEY_ID,
        request_body={"json": SUBMISSION} if kind == "submit" else None,
        status=status,
        response_headers={"content-type": "application/json"},
        response_body={"json": body},
        latency=0.01,
        task_id=task_id,
    )


def recorded(*polls: str, unknown: bool = True) -> list[Exchange]:
    """A submission of task_000001 answered queued, then one poll answered each of ``polls``
    (statuses), then (``unknown``) a poll of a task that does not exist."""
    tid, path = "task_000001", "/v1/images/tasks"
    lines = [exchange("submit", path, 200, wrapped(task(tid, "queued", "0%")), tid)]
    progress = {"queued": "0%", "processing": "40%", "succeeded": "100%"}
    for status in polls:
        answer = wrapped(task(tid, status, progress[status]))
        lines.append(exchange("poll", f"{path}/{tid}", 200, answer, tid))
    if unknown:
        lines.append(
            exchange("poll", f"{path}/task_nope", 404, not_found("task_nope"), "task_nope")
        )
    return lines


def write_cassette(directory: Path, lines: list[Exchange], session: bool = True) -> Path:
    writer = CassetteWriter(directory)
    if session:
        writer.append({"v": 1, "kind": "session", "t": 1796080618.9, "upstream": "http://x"})
    for line in lines:
        writer.append(line.to_record())
    writer.close()
    return directory


__all__ = ["SUBMISSION", "recorded", "service", "task", "wrapped", "write_cassette"]
