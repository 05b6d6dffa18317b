"""The opt-in JSON access log (``log_format = "json"``): one line per request, with what an
operator greps for (time, method, path, status, duration, task id, the key masked), in place
of uvicorn's text lines.

Nothing secret reaches it: the bearer key is masked as in the journal, and so is a key in a
path (``/_emulator/balances/{key}``); a result URL's capability token (SPEC D-14) is replaced,
since the path alone would serve the picture to whoever reads the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.keys import mask_key

LOGGER = "emulator.access"
_RESULT = re.compile(r"^(/_emulator/results/[^/]+/)[^/]+(/.*)?$")
_BALANCE = re.compile(r"^(/_emulator/balances/)(.+)$")
_MASKED_TOKEN = "***"


def masked_path(path: str) -> str:
    """``path`` with a result token and a key in it masked."""
    result = _RESULT.match(path)
    if result is not None:
        return f"{result.group(1)}{_MASKED_TOKEN}{result.group(2) or ''}"
    balance = _BALANCE.match(path)
    if balance is not None:
        return f"{balance.group(1)}{mask_key(balance.group(2))}"
    return path


class AccessLog:
    """ASGI middleware writing one JSON line per HTTP request to the ``emulator.access``
    logger (pure ASGI: no per-request Starlette objects)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = logging.getLogger(LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0  # no answer: a dropped connection, or the client gave up

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if self.logger.isEnabledFor(logging.INFO):
                self.logger.info(_line(scope, status, started))


def _line(scope: Scope, status: int, started: float) -> str:
    state: dict[str, Any] = scope.get("state") or {}
    key = state.get("api_key")
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "method": scope["method"],
        "path": masked_path(scope["path"]),
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "task_id": state.get("task_id"),
        "api_key": mask_key(key) if key else None,
    }
    # ensure_ascii: a path may hold any character, the line stays one line of ASCII.
    return json.dumps(entry, separators=(",", ":"))


def configure(log_level: str) -> None:
    """Send the access lines to stdout, one bare JSON line each (``serve`` calls this; a test
    reads them with ``caplog``). Idempotent."""
    logger = logging.getLogger(LOGGER)
    if not any(getattr(h, "_emulator_access", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._emulator_access = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
    # As uvicorn's access log: lines at info, silent from warning up.
    logger.setLevel(logging.INFO if log_level in ("info", "debug") else logging.WARNING)


__all__ = ["LOGGER", "AccessLog", "configure", "masked_path"]
