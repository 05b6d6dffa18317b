"""The "real service" of the recording tests, and a client that records through the proxy.

The real service is a second emulator started with other settings than the defaults (the bare
envelope, errors as text, four polls per task) behind a seeded deviation (progress goes back
once per task), served on a free loopback port. The recorder runs in front of it, also on
loopback; `Driver` submits tasks and polls each until it ends, as a client would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.types import Scope

from emulator import Settings, create_app
from emulator.recording.recorder import RecorderOptions, create_recorder_app
from emulator.recording.replay import create_replay_app

from .conform_support import KEY, Served, drift_app, is_poll, task_edit

SUBMISSIONS: list[dict[str, Any]] = [
    {"model": "NanoBanana2-0.5K", "prompt": "a red cube", "aspect_ratio": "16:9"},
    {
        "model": "gpt-image-2",
        "prompt": "a blue sphere",
        "size": "1024x768",
        "quality": "low",
        "n": 2,
        "output_format": "webp",
    },
    {"model": "NanoBanana2-0.5K", "prompt": "a green cone", "image": "https://example.com/a.png"},
]
#: The settings the "real service" differs from the defaults by.
REAL_SETTINGS: dict[str, Any] = {"envelope": "bare", "error_shape": "string", "per_poll_steps": 4}


def progress_goes_back() -> Callable[[Scope, bytes, Any], Any]:
    """The seeded deviation: the second processing answer of each task goes back to 10%."""
    seen: dict[str, int] = {}

    def edit(task: dict[str, Any], scope: Scope) -> None:
        if task.get("status") == "processing":
            n = seen[task["task_id"]] = seen.get(task["task_id"], 0) + 1
            if n == 2:
                task["progress"] = "10%"

    return task_edit(edit, is_poll)


def real_service(deviate: bool = True, **settings: Any) -> Any:
    """The emulator standing in for the real service (an ASGI app)."""
    chosen = {**REAL_SETTINGS, **settings}
    return drift_app(progress_goes_back() if deviate else None, **chosen)


class LifespanServed(Served):
    """`Served` with the app's lifespan run (the recorder writes its session line there and
    closes its cassette at the end)."""

    lifespan = "on"


@contextmanager
def serving(app: Any) -> Iterator[str]:
    served = LifespanServed(app)
    try:
        yield served.base_url
    finally:
        served.stop()


@contextmanager
def recorder(
    upstream: str, directory: Path, clock: Callable[[], float] | None = None, **options: Any
) -> Iterator[str]:
    """The recording proxy in front of ``upstream`` (its lifespan runs: a session line)."""
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    app = create_recorder_app(RecorderOptions(upstream, directory, **options), **kwargs)
    with serving(app) as url:
        yield url


@contextmanager
def replaying(directory: Path) -> Iterator[str]:
    with serving(create_replay_app(directory)) as url:
        yield url


def task_of(data: Any) -> dict[str, Any]:
    inner = data.get("data") if isinstance(data, dict) else None
    return inner if isinstance(inner, dict) else data


class Driver:
    """A client of the task routes that keeps every answer it got, as bytes."""

    def __init__(self, base_url: str, key: str | None = KEY) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=30)
        self.answers: list[tuple[str, int, bytes, str]] = []

    def close(self) -> None:
        self.http.close()

    def submit(self, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        response = self.http.post("/v1/images/tasks", json=body, **kwargs)
        self._keep("POST", response)
        return response

    def poll(self, task_id: str) -> httpx.Response:
        response = self.http.get(f"/v1/images/tasks/{task_id}")
        self._keep("GET", response)
        return response

    def _keep(self, method: str, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "")
        self.answers.append((method, response.status_code, response.content, content_type))

    def follow(self, body: dict[str, Any], max_polls: int = 12) -> str:
        """Submit ``body`` and poll its task until it ends; returns the task id."""
        response = self.submit(body)
        assert response.status_code == 200, response.text
        task_id = str(task_of(response.json())["task_id"])
        for _ in range(max_polls):
            if task_of(self.poll(task_id).json())["status"] in ("succeeded", "failed"):
                break
        self.poll(task_id)  # once more: the end is final
        return task_id


def lines(directory: Path) -> list[dict[str, Any]]:
    text = (directory / "cassette.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


__all__ = [
    "KEY",
    "REAL_SETTINGS",
    "SUBMISSIONS",
    "Driver",
    "Settings",
    "create_app",
    "lines",
    "real_service",
    "recorder",
    "replaying",
    "serving",
]
