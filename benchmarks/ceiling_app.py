"""The ceiling: the least a Starlette app can do to answer the two task routes.

A bare Starlette app holding a dict of tasks, served like the emulator (uvicorn, uvloop +
httptools, one worker). It checks the bearer key, parses the JSON body, stores a task under a
fresh id and answers the same envelope, but validates nothing else, keeps no journal and has
no clock: no Starlette emulator can be faster than this on the same machine.

Serve it with ``python -m uvicorn benchmarks.ceiling_app:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TASKS: dict[str, tuple[str, dict[str, Any]]] = {}


def _key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _unauthorized() -> Response:
    body = {"error": {"message": "missing key", "type": "invalid_request_error", "code": None}}
    return JSONResponse(body, status_code=401)


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
    TASKS[task_id] = (key, task)
    return JSONResponse(_envelope(task))


async def poll(request: Request) -> Response:
    key = _key(request)
    if key is None:
        return _unauthorized()
    found = TASKS.get(request.path_params["task_id"])
    if found is None or found[0] != key:
        body = {"code": "task_not_found", "message": "task does not exist", "data": None}
        return JSONResponse(body, status_code=404)
    return JSONResponse(_envelope(found[1]))


app = Starlette(
    routes=[
        Route("/v1/images/tasks", submit, methods=["POST"]),
        Route("/v1/images/tasks/{task_id}", poll, methods=["GET"]),
    ]
)
