"""The request journal: what clients sent and what they got, with secrets masked."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

if TYPE_CHECKING:
    from .app import Emulator

#: Header values never journaled in full.
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-emulator-token", "proxy-authorization"})
_MAX_TEXT = 200


def mask_key(key: str) -> str:
    """Enough of a key to tell keys apart, never enough to use it: ``sk-t…key``."""
    if len(key) <= 8:
        return "…" if len(key) <= 2 else key[:1] + "…" + key[-1:]
    return f"{key[:4]}…{key[-3:]}"


def mask_header(name: str, value: str) -> str:
    if name not in SECRET_HEADERS:
        return value
    scheme, sep, rest = value.partition(" ")
    if sep and scheme.lower() in ("bearer", "basic", "token"):
        return f"{scheme} {mask_key(rest.strip())}"
    return mask_key(value)


def _short(value: Any) -> Any:
    if isinstance(value, str):
        if value.startswith("data:"):
            return value[: value.find(",") + 1] + "…" if "," in value else "data:…"
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"
    if isinstance(value, list):
        return [_short(v) for v in value[:20]]
    if isinstance(value, dict):
        return {str(k)[:_MAX_TEXT]: _short(v) for k, v in list(value.items())[:40]}
    return value


def summarise_body(request: Request) -> dict[str, Any] | None:
    """The parsed fields the validator saw (long strings cut), and uploaded files' sizes."""
    fields = getattr(request.state, "fields", None)
    files = getattr(request.state, "files", None)
    if fields is None and not files:
        return None
    summary: dict[str, Any] = {"fields": _short(fields or {})}
    if files:
        summary["files"] = [{"name": name, "bytes": size} for name, size in files]
    return summary


async def record(
    emulator: Emulator, request: Request, endpoint: str, status: int, started: float
) -> None:
    """Append one journal entry for ``request``."""
    limit = emulator.settings.journal_limit
    if limit <= 0:
        return
    state = request.state
    key = getattr(state, "api_key", None)
    entry = {
        "time": time.time(),
        "clock": await emulator.clock.now(),
        "endpoint": endpoint,
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": {k: mask_header(k, v) for k, v in request.headers.items()},
        "api_key": mask_key(key) if key else None,
        "body": summarise_body(request),
        "status": status,
        "task_id": getattr(state, "task_id", None),
        "fault": getattr(state, "fault", None),
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    await emulator.store.append_journal(entry, limit)
