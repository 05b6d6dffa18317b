"""A downstream client written the obvious way: submit, poll every 2 s, stop at a terminal state.

This is example code a user of the real service would write; the tests beside it run it
against the emulator's faults. ``sleep`` is injectable so tests move the emulator's manual
clock instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

TRANSIENT_STATUSES = {429, 500, 502, 503, 504}


class TaskFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class GaveUp(Exception):
    """Too many transient errors in a row."""


class ImageTaskClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: httpx.Client | None = None,
        poll_interval: float = 2.0,
        timeout: float = 30.0,
        attempts: int = 5,
        max_polls: int = 300,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.poll_interval = poll_interval
        self.attempts = attempts
        self.max_polls = max_polls
        self.sleep = sleep
        self.retries = 0

    def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """One API call, retried on 429/5xx (honouring Retry-After), timeouts and broken bodies."""
        for attempt in range(self.attempts):
            try:
                response = self.http.request(method, url, headers=self.headers, **kwargs)
                if response.status_code in TRANSIENT_STATUSES:
                    retry_after = float(response.headers.get("retry-after", 2**attempt))
                    raise _Transient(retry_after)
                response.raise_for_status()
                body: dict[str, Any] = response.json()
                return body.get("data", body) if "code" in body else body
            except (_Transient, httpx.TransportError, ValueError) as exc:
                self.retries += 1
                self.sleep(exc.retry_after if isinstance(exc, _Transient) else 2**attempt)
        raise GaveUp(f"{method} {url}: {self.attempts} attempts failed")

    def submit(self, payload: dict[str, Any]) -> str:
        task_id: str = self._call("POST", "/v1/images/tasks", json=payload)["task_id"]
        return task_id

    def wait(self, task_id: str) -> dict[str, Any]:
        for _ in range(self.max_polls):
            task = self._call("GET", f"/v1/images/tasks/{task_id}")
            if task["status"] == "succeeded":
                return task
            if task["status"] == "failed":
                error = task["error"] or {}
                raise TaskFailed(error.get("code", "unknown"), error.get("message", ""))
            self.sleep(self.poll_interval)
        raise GaveUp(f"task {task_id} did not finish in {self.max_polls} polls")

    def download(self, task: dict[str, Any]) -> list[bytes]:
        urls = task["metadata"].get("result_urls") or [task["result_url"]]
        return [self.http.get(url).raise_for_status().content for url in urls]

    def generate(self, payload: dict[str, Any]) -> list[bytes]:
        return self.download(self.wait(self.submit(payload)))


class _Transient(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after
