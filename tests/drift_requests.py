"""Deviating services that read requests differently: near misses accepted, refusals, keys,
rate limits and latency (see tests/drifts.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Scope

from emulator.core.catalogue import Catalogue

from .conform_support import (
    KEY,
    SECOND_KEY,
    Answer,
    drift_app,
    header,
    is_poll,
    is_submit,
    json_request_edit,
)


# -- near misses accepted ---------------------------------------------------------------------
def lenient(edit: Callable[[dict[str, Any]], None]) -> Callable[[], ASGIApp]:
    def build() -> ASGIApp:
        return drift_app(request=json_request_edit(lambda body, scope: edit(body)))

    return build


def any_gpt_size(body: dict[str, Any]) -> None:
    size = body.get("size")
    if body.get("model") == "gpt-image-2" and size and size not in Catalogue.load().gpt_sizes:
        body["size"] = "1024x1024"


def gpt_ignores_aspect_ratio(body: dict[str, Any]) -> None:
    if body.get("model") == "gpt-image-2":
        body.pop("aspect_ratio", None)


def webp_for_every_model(body: dict[str, Any]) -> None:
    if str(body.get("model", "")).startswith("NanoBanana") and body.get("output_format") == "webp":
        body["output_format"] = "png"


def n_clamped(body: dict[str, Any]) -> None:
    if body.get("model") == "gpt-image-2" and isinstance(body.get("n"), int) and body["n"] > 8:
        body["n"] = 8


def blank_prompt_accepted(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if isinstance(prompt, str) and prompt and not prompt.strip():
        body["prompt"] = "x"


def any_nano_size_word(body: dict[str, Any]) -> None:
    size = body.get("size")
    if str(body.get("model", "")).startswith("NanoBanana") and size == "3K":
        body.pop("size")


def default_size(body: dict[str, Any]) -> None:
    if body.get("model") == "gpt-image-2" and body.get("size") is None:
        body["size"] = "1024x1024"


def image2image_without_picture(body: dict[str, Any]) -> None:
    if body.get("task_type") == "image2image" and not (body.get("image") or body.get("images")):
        body.pop("task_type")


def jpeg_by_default(body: dict[str, Any]) -> None:
    if body.get("output_format") is None:
        body["output_format"] = "jpeg"


def wide_by_default(body: dict[str, Any]) -> None:
    if str(body.get("model", "")).startswith("NanoBanana") and body.get("aspect_ratio") is None:
        body["aspect_ratio"] = "16:9"


def explicit_task_type_ignored(body: dict[str, Any]) -> None:
    if body.get("image") or body.get("images"):
        body.pop("task_type", None)


def images_ignored(body: dict[str, Any]) -> None:
    body.pop("images", None)


def multipart_unsupported() -> ASGIApp:
    def refuse(scope: Scope, request: bytes, answer: Answer) -> Answer:
        if is_submit(scope) and (header(scope, b"content-type") or b"").startswith(b"multipart/"):
            body = {"code": "unsupported_media_type", "message": "send JSON", "data": None}
            return 415, [(b"content-type", b"application/json")], json.dumps(body).encode()
        return answer

    return drift_app(refuse)


def any_content_type_read_as_json() -> ASGIApp:
    def as_json(scope: Scope) -> Scope:
        if is_submit(scope) and header(scope, b"content-type") == b"text/plain":
            kept = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            scope["headers"] = [*kept, (b"content-type", b"application/json")]
        return scope

    return drift_app(scope_edit=as_json)


def submissions_without_key() -> ASGIApp:
    def add_key(scope: Scope) -> Scope:
        if is_submit(scope) and header(scope, b"authorization") is None:
            scope["headers"] = [*scope["headers"], (b"authorization", f"Bearer {KEY}".encode())]
        return scope

    return drift_app(scope_edit=add_key)


def submissions_take_any_key() -> ASGIApp:
    """Polls check the key; submissions take any key (and bill the run's)."""

    def swap(scope: Scope) -> Scope:
        if is_submit(scope) and header(scope, b"authorization") is not None:
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            scope["headers"] = [*headers, (b"authorization", f"Bearer {KEY}".encode())]
        return scope

    return drift_app(scope_edit=swap)


# -- error bodies and headers ---------------------------------------------------------------------
def refusals(change: Callable[[Answer], Answer], status: int = 400) -> Callable[[], ASGIApp]:
    def build() -> ASGIApp:
        def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
            return change(answer) if answer[0] == status and is_submit(scope) else answer

        return drift_app(mutate)

    return build


def vague(answer: Answer) -> Answer:
    body = json.dumps({"code": "invalid_request", "message": "invalid request", "data": None})
    return 400, answer[1], body.encode()


def n_named_nowhere(answer: Answer) -> Answer:
    """The refusal of an out-of-range n speaks of another field: an "n" only inside words."""
    data = json.loads(answer[2])
    if str(data.get("message", "")).startswith("n "):
        data["message"] = "invalid value for size"
    return 400, answer[1], json.dumps(data).encode()


def polls_without_key_allowed() -> ASGIApp:
    def add_key(scope: Scope) -> Scope:
        if is_poll(scope) and header(scope, b"authorization") is None:
            scope["headers"] = [*scope["headers"], (b"authorization", f"Bearer {KEY}".encode())]
        return scope

    return drift_app(scope_edit=add_key)


def relay_style_401() -> ASGIApp:
    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        if answer[0] == 401:
            return 401, answer[1], b'{"code": "unauthorized", "message": "no key", "data": null}'
        return answer

    return drift_app(mutate)


def rate_limit_without_retry_after() -> ASGIApp:
    first: set[str] = set()

    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        task_id = str(scope["path"]).rsplit("/", 1)[-1]
        if answer[0] == 200 and is_poll(scope) and task_id not in first:
            first.add(task_id)
            limited = {"code": "rate_limited", "message": "slow down", "data": None}
            return 429, [(b"content-type", b"application/json")], json.dumps(limited).encode()
        return answer

    return drift_app(mutate)


# -- keys and latency ---------------------------------------------------------------------------
def tasks_shared_between_keys() -> ASGIApp:
    def same_key(scope: Scope) -> Scope:
        if is_poll(scope) and header(scope, b"authorization") == f"Bearer {SECOND_KEY}".encode():
            kept = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            scope["headers"] = [*kept, (b"authorization", f"Bearer {KEY}".encode())]
        return scope

    return drift_app(scope_edit=same_key)


def slow_submissions() -> ASGIApp:
    def delay(scope: Scope, answer: Answer) -> float:
        return 0.6 if is_submit(scope) and answer[0] == 200 else 0.0

    return drift_app(delay=delay)


def server_error(answer: Answer) -> Answer:
    return 500, answer[1], b'{"error": "boom"}'
