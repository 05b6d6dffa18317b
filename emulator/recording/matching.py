"""Which recorded submission a request is: the same body, whatever its incidental form.

Two JSON bodies are the same submission when they hold the same value (member order and
spacing aside); two multipart bodies when they hold the same fields and the same files
(the boundary aside). Anything else is compared byte for byte. Which key was sent (its key id,
or none) is part of the match: the same body without a key was a different exchange (a 401),
and with another key another one (the service may refuse that key, or give it its own task).
"""

from __future__ import annotations

import hashlib
import json
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from .exchange import MAX_JSON_DEPTH, json_depth


def form_fields(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]] | None:
    """(name, file name or None, value) of each part of a multipart/form-data body; None when
    it is not one."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        return None
    fields = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields.append(
            (
                str(name) if name is not None else "",
                part.get_filename(),
                payload if isinstance(payload, bytes) else b"",
            )
        )
    return fields


_NOT_JSON = object()


def _json(body: bytes) -> Any:
    """``body``'s JSON value, or `_NOT_JSON`: not JSON, or nested past `MAX_JSON_DEPTH` (the
    same either side: a recorded body and a request, whatever Python's stack allows)."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _NOT_JSON
    return parsed if json_depth(parsed) <= MAX_JSON_DEPTH else _NOT_JSON


def submission_key(content_type: str, body: bytes, caller: str | None) -> str:
    """A name equal for two requests that are the same submission from the same caller
    (``caller``: the key id, None without a key; `masking.caller`)."""
    kind = content_type.split(";")[0].strip().lower()
    shape: Any
    if "json" in kind:
        parsed = _json(body)
        json_shape = parsed is not _NOT_JSON
        shape = ["json", parsed] if json_shape else ["bytes", hashlib.sha256(body).hexdigest()]
    else:
        fields = form_fields(content_type, body)
        if fields is not None:
            shape = [
                "form",
                sorted(
                    [name, filename, hashlib.sha256(value).hexdigest()]
                    for name, filename, value in fields
                ),
            ]
        else:
            shape = ["bytes", kind, hashlib.sha256(body).hexdigest()]
    shape.append("no key" if caller is None else f"key {caller}")
    return json.dumps(shape, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def describe(content_type: str, body: bytes) -> str:
    """A few words naming a submission in a message (its model and prompt when it has them)."""
    fields: dict[str, Any] = {}
    parsed = _json(body)
    if isinstance(parsed, dict):
        fields = parsed
    elif parsed is _NOT_JSON:
        for name, filename, value in form_fields(content_type, body) or []:
            if filename is None:
                fields.setdefault(name, value.decode("utf-8", "replace"))
    model, prompt = fields.get("model"), fields.get("prompt")
    if model is None and prompt is None:
        return f"a {content_type.split(';')[0] or 'body'} of {len(body)} bytes"
    text = str(prompt)
    return f"model {model!r}, prompt {text[:40]!r}{'…' if len(text) > 40 else ''}"


__all__ = ["describe", "form_fields", "submission_key"]
