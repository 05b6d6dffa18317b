"""The ceiling: the least a Starlette app can do to answer the task routes.

A bare Starlette app holding a dict of tasks, served like the emulator (uvicorn, uvloop +
httptools, one worker, log level warning). It checks the bearer key, parses the JSON body,
stores a task under a fresh id and answers the same envelope (a poll finds it done, with a
result URL, as the emulator at time_scale 0 does), but validates nothing else, keeps no journal
and has no clock: no Starlette emulator can be faster than this on the same
machine. For the mixed workload it also serves one result picture (the bytes of the file named
by ``CEILING_RESULT_FILE``) for any task it holds, like the emulator's cached results.

Serve it with ``python -m uvicorn benchmarks.ceiling_app:app --loop uvloop --http httptools
--log-level warning``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TASKS: dict[str, tuple[str, dict[str, Any]]] = {}
_RESULT_FILE = os.environ.get("CEILING_RESULT_FILE", "")
RESULT: bytes | None = Path(_RESULT_FILE).read_bytes() if _RESULT_FILE else None


def _key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _unauthorized() -> Response:
    body = {"error": {"message": "missing key", "type": "invalid_request_error", "code": None}}
    return JSONResponse(body, status_code=401)


def _not_found() -> Response:
    body = {"code": "task_not_found", "message": "task does not exist", "data": None}
    return JSONResponse(body, status_code=404)


def _envelope(task: dict[str, Any]) -> dict[str, Any]:
    return {"code": "success", "message": "", "data": task}


async def submit(request: Request) -> Response:
    key = _key(request)
    if key is None:
        return _unauthorized()
    try:
        fields = json.loads(await request.body())
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or not fields.get("model") or not fields.get("prompt"):
        return JSONResponse(
            {"code": "invalid_request", "message": "model and prompt are required", "data": None},
            status_code=400,
        )
    task_id = "task_" + os.urandom(16).hex()
    task = {
        "task_id": task_id,
        "status": "queued",
        "progress": "0%",
        "result_url": None,
        "metadata": {"task_type": "text2image", "result_count": 0},
        "error": None,
    }
    # What a poll answers: the task done (no clock here), with a result URL like ours.
    done = dict(task, status="succeeded", progress="100%")
    done["result_url"] = f"{request.base_url}_emulator/results/{task_id}/0.png"
    done["metadata"] = {"task_type": "text2image", "result_count": 1}
    TASKS[task_id] = (key, done)
    return JSONResponse(_envelope(task))


async def poll(request: Request) -> Response:
    key = _key(request)
    if key is None:
        return _unauthorized()
    found = TASKS.get(request.path_params["task_id"])
    if found is None or found[0] != key:
        return _not_found()
    return JSONResponse(_envelope(found[1]))


async def result(request: Request) -> Response:
    if RESULT is None or request.path_params["task_id"] not in TASKS:
        return _not_found()
    return Response(RESULT, media_type="image/png")


app = Starlette(
    routes=[
        Route("/v1/images/tasks", submit, methods=["POST"]),
        Route("/v1/images/tasks/{task_id}", poll, methods=["GET"]),
        Route("/_emulator/results/{task_id}/0.png", result, methods=["GET"]),
    ]
)
