"""An exchange as a person reads it: the request as a curl command (the key masked), the
answer's body cut to a readable length, and a schemathesis failure as a `Sample` whose first
line says what went wrong."""

from __future__ import annotations

import json
import shlex
from typing import Any

import httpx

from .deviations import Sample
from .explain import Explainer

_BODY_EXCERPT = 600
_CURL_BODY = 1500


def failure_sample(
    check: str,
    operation: str,
    failure: Any,
    status: int | None,
    body: bytes,
    explainer: Explainer,
    *,
    request: str,
    response: str,
) -> Sample:
    """A schemathesis failure as a `Sample` whose first line a person understands."""
    message = str(getattr(failure, "message", "") or "").strip()
    title = str(getattr(failure, "title", "") or check).strip()
    if title.startswith("Custom check failed"):
        line, detail = f"{operation}: {message}", ""
    else:
        explanation = ""
        if check == "response_schema_conformance" and status is not None:
            explanation = explainer.explain(operation, status, body)
        said = explanation or " ".join(message.split())
        line = f"{operation} answered {status}: {title}" + (f": {said}" if said else "")
        detail = f"{title}: {message}" if message else title
        if explanation:
            detail += f"\n{explanation}"
    return Sample(line=line, detail=detail, request=request, status=status, response=response)


def curl(request: httpx.Request) -> str:
    """The request as a curl command; the bearer key is masked."""
    parts = ["curl", "-X", request.method, shlex.quote(str(request.url))]
    for name, value in request.headers.items():
        if name.lower() in ("host", "content-length", "accept-encoding", "connection", "accept"):
            continue
        if name.lower() == "user-agent":
            continue
        if name.lower() == "authorization":
            value = value.split(" ", 1)[0] + " ***" if " " in value else "***"
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    try:
        body = request.content
    except httpx.RequestNotRead:
        body = b""
    if body:
        text = body.decode("utf-8", "replace")
        if len(text) > _CURL_BODY:
            text = text[:_CURL_BODY] + f"... ({len(body)} bytes)"
        parts += ["-d", shlex.quote(text)]
    return " ".join(parts)


def excerpt(response: Any) -> str:
    """A response's content type and body, cut to a readable length (httpx or schemathesis)."""
    if response is None:
        return "(no response)"
    content_type = response.headers.get("content-type", "")
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    body: bytes = response.content or b""
    if content_type.startswith(("application/json", "text/")) or not body:
        text = body.decode("utf-8", "replace")
        if len(text) > _BODY_EXCERPT:
            text = text[:_BODY_EXCERPT] + f"... ({len(body)} bytes)"
        return f"[{content_type or 'no content-type'}] {text}"
    return f"[{content_type}] ({len(body)} bytes)"


def compact(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
