"""A cassette read as evidence: each exchange of the task routes with what it sent and got,
parsed once, and the tasks it followed (a submission and its polls, in recorded order)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..conformance.checks import POLL, SUBMIT, unwrap
from .cassette import Cassette, Exchange
from .matching import form_fields

TERMINAL = ("succeeded", "failed")


@dataclass(slots=True)
class Sent:
    """One recorded exchange of a task route."""

    exchange: Exchange
    operation: str
    #: The request body as bytes (masked as recorded); None when a blob is missing.
    request_body: bytes | None
    #: Submission fields (JSON members, or multipart text fields); None: not readable.
    fields: dict[str, Any] | None
    #: A multipart submission with a file part.
    uploaded: bool
    #: The answer body as bytes, and as JSON (None: not JSON).
    response_body: bytes | None
    data: Any
    #: The task of a 2xx task answer and its envelope ("wrapped" or "bare").
    envelope: str | None = None
    task: dict[str, Any] | None = None

    @property
    def status(self) -> int | None:
        return self.exchange.status

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(slots=True)
class Followed:
    """A task the recording saw created: its submission, then its polls by the same key."""

    task_id: str
    submission: Sent
    polls: list[Sent] = field(default_factory=list)
    #: Polls of this task by another key (key isolation) or without one.
    foreign: list[Sent] = field(default_factory=list)

    @property
    def answers(self) -> list[Sent]:
        """The submission then every poll answered with this task."""
        return [self.submission, *[p for p in self.polls if p.task is not None]]

    @property
    def last_status(self) -> str | None:
        task = self.answers[-1].task
        return None if task is None else str(task.get("status"))


@dataclass(slots=True)
class Evidence:
    cassette: Cassette
    sent: list[Sent]
    tasks: dict[str, Followed]
    #: Result downloads: masked URL -> the exchange.
    pictures: dict[str, Exchange]


def read_sent(cassette: Cassette, exchange: Exchange) -> Sent:
    operation = SUBMIT if exchange.kind == "submit" else POLL
    request_body = cassette.body(exchange.request_body)
    fields: dict[str, Any] | None = None
    uploaded = False
    if exchange.kind == "submit" and request_body is not None:
        content_type = exchange.request_content_type
        if "json" in content_type.lower():
            fields = _json_object(request_body)
        else:
            parts = form_fields(content_type, request_body)
            if parts is not None:
                fields = {}
                for name, filename, value in parts:
                    if filename is None:
                        fields.setdefault(name, value.decode("utf-8", "replace"))
                    elif name == "image":
                        uploaded = True
    response_body = cassette.body(exchange.response_body)
    data = _json(response_body)
    sent = Sent(exchange, operation, request_body, fields, uploaded, response_body, data)
    if sent.ok and (unwrapped := unwrap(data)) is not None:
        sent.envelope, sent.task = unwrapped
    return sent


def gather(cassette: Cassette) -> Evidence:
    """Every task-route exchange read, and the tasks they followed."""
    sent: list[Sent] = []
    tasks: dict[str, Followed] = {}
    owners: dict[str, str | None] = {}
    pictures: dict[str, Exchange] = {}
    for exchange in cassette.exchanges:
        if exchange.kind == "result":
            if exchange.url is not None:
                pictures.setdefault(exchange.url, exchange)
            continue
        item = read_sent(cassette, exchange)
        sent.append(item)
        if exchange.kind == "submit" and item.task is not None:
            task_id = str(item.task.get("task_id"))
            tasks[task_id] = Followed(task_id, item)
            owners[task_id] = exchange.key_id
        elif exchange.kind == "poll" and exchange.task_id in tasks:
            followed = tasks[exchange.task_id]
            same_key = exchange.keyed and exchange.key_id == owners[exchange.task_id]
            (followed.polls if same_key else followed.foreign).append(item)
    return Evidence(cassette, sent, tasks, pictures)


def _json(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeply
        return None


def _json_object(data: bytes) -> dict[str, Any] | None:
    parsed = _json(data)
    return parsed if isinstance(parsed, dict) else None


def message_of(data: Any) -> str:
    """The human text of an error answer (either body shape), or ''."""
    if not isinstance(data, dict):
        return ""
    if isinstance(data.get("error"), dict):
        return str(data["error"].get("message", ""))
    return str(data.get("message", ""))


def code_of(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    code = data["error"].get("code") if isinstance(data.get("error"), dict) else data.get("code")
    return None if code is None else str(code)


__all__ = ["TERMINAL", "Evidence", "Followed", "Sent", "code_of", "gather", "message_of"]
