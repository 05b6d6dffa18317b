"""Deviating services that change the service's answers: the life cycle seen across polls,
result pictures, and single answers off the schema (see tests/drifts.py)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Scope

from .conform_support import (
    Answer,
    drift_app,
    is_picture,
    is_poll,
    is_submit,
    relative,
    task_edit,
)


def _nth_answer(status: str, where: Callable[[Scope], bool] = is_poll) -> Any:
    """An edit helper that counts, per task, the answers with ``status`` it has seen."""
    seen: dict[str, int] = {}

    def count(task: dict[str, Any]) -> int | None:
        if task.get("status") != status:
            return None
        n = seen.get(task["task_id"], 0)
        seen[task["task_id"]] = n + 1
        return n

    return count


# -- the life cycle, across answers ---------------------------------------------------------------
def progress_goes_back() -> ASGIApp:
    count = _nth_answer("processing")

    def edit(task: dict[str, Any], scope: Scope) -> None:
        n = count(task)
        if n is not None:
            task["progress"] = "60%" if n == 0 else "30%"

    return drift_app(task_edit(edit, is_poll))


def status_goes_back() -> ASGIApp:
    count = _nth_answer("processing")

    def edit(task: dict[str, Any], scope: Scope) -> None:
        if count(task) == 1:
            task.update(status="queued", progress="0%")

    return drift_app(task_edit(edit, is_poll))


def terminal_not_final() -> ASGIApp:
    count = _nth_answer("succeeded")

    def edit(task: dict[str, Any], scope: Scope) -> None:
        if count(task) == 1:
            task.update(status="processing", progress="99%", result_url=None)
            task["metadata"] = {"task_type": task["metadata"]["task_type"], "result_count": 0}

    return drift_app(task_edit(edit, is_poll))


def terminal_forgotten_later() -> ASGIApp:
    """Final for three polls after the end, then back to processing: watched long enough?"""
    count = _nth_answer("succeeded")

    def edit(task: dict[str, Any], scope: Scope) -> None:
        if (count(task) or 0) >= 3:
            task.update(status="processing", progress="50%", result_url=None)
            task["metadata"] = {"task_type": task["metadata"]["task_type"], "result_count": 0}

    return drift_app(task_edit(edit, is_poll))


def submission_not_queued() -> ASGIApp:
    def edit(task: dict[str, Any], scope: Scope) -> None:
        task.update(status="processing", progress="5%")

    return drift_app(task_edit(edit, is_submit))


def polls_answer_bare() -> ASGIApp:
    def unwrap(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, body = answer
        if status == 200 and is_poll(scope):
            body = json.dumps(json.loads(body)["data"]).encode()
        return status, headers, body

    return drift_app(unwrap)


def fewer_pictures_than_asked() -> ASGIApp:
    def edit(task: dict[str, Any], scope: Scope) -> None:
        if task["metadata"].get("result_count", 0) > 1:
            task["metadata"] = {"task_type": task["metadata"]["task_type"], "result_count": 1}

    return drift_app(task_edit(edit))


def result_urls_disagree() -> ASGIApp:
    def edit(task: dict[str, Any], scope: Scope) -> None:
        urls = task["metadata"].get("result_urls")
        if urls:
            urls.append(urls[0])

    return drift_app(task_edit(edit))


def result_url_not_first() -> ASGIApp:
    def edit(task: dict[str, Any], scope: Scope) -> None:
        urls = task["metadata"].get("result_urls")
        if urls and len(urls) > 1:
            task["result_url"] = urls[-1]

    return drift_app(task_edit(edit))


def task_type_not_inferred() -> ASGIApp:
    def edit(task: dict[str, Any], scope: Scope) -> None:
        task["metadata"]["task_type"] = "text2image"

    return drift_app(task_edit(edit))


def processing_at_100() -> ASGIApp:
    def edit(task: dict[str, Any], scope: Scope) -> None:
        if task["status"] == "processing":
            task["progress"] = "100%"

    return drift_app(task_edit(edit))


def succeeded_without_results() -> ASGIApp:
    def edit(task: dict[str, Any], scope: Scope) -> None:
        if task["status"] == "succeeded":
            task["metadata"] = {"task_type": task["metadata"]["task_type"], "result_count": 0}

    return drift_app(task_edit(edit))


def poll_answers_another_id() -> ASGIApp:
    def edit(task: dict[str, Any], scope: Scope) -> None:
        task["task_id"] += "_upstream"

    return drift_app(task_edit(edit, is_poll))


def new_task_not_found_at_first() -> ASGIApp:
    first: set[str] = set()

    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, body = answer
        if status == 200 and is_poll(scope):
            task_id = str(scope["path"]).rsplit("/", 1)[-1]
            if task_id not in first:
                first.add(task_id)
                message = f"task {task_id!r} does not exist"
                body = json.dumps({"code": "task_not_found", "message": message, "data": None})
                return 404, headers, body.encode()
        return answer

    return drift_app(mutate)


def task_never_finishes() -> ASGIApp:
    # Every poll answers the same, whatever the per-poll clock reached: on a loaded machine the
    # deadline can come before the task would have succeeded, and the finding must not depend
    # on how many polls fitted in it.
    def edit(task: dict[str, Any], scope: Scope) -> None:
        if task["status"] in ("queued", "processing", "succeeded"):
            task.update(status="processing", progress="99%", result_url=None)
            task["metadata"] = {"task_type": task["metadata"]["task_type"], "result_count": 0}

    return drift_app(task_edit(edit, is_poll))


# -- result pictures ----------------------------------------------------------------------------
def _picture_edit(change: Callable[[bytes, list[tuple[bytes, bytes]]], Answer]) -> ASGIApp:
    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, body = answer
        if status == 200 and is_picture(headers):
            return change(body, headers)
        return answer

    return drift_app(mutate)


def pictures_wrong_size() -> ASGIApp:
    from PIL import Image

    def change(body: bytes, headers: list[tuple[bytes, bytes]]) -> Answer:
        with Image.open(io.BytesIO(body)) as picture:
            fmt = picture.format
            out = io.BytesIO()
            picture.convert("RGB").resize((64, 64)).save(out, fmt)
        return 200, headers, out.getvalue()

    return _picture_edit(change)


def pictures_always_png() -> ASGIApp:
    from PIL import Image

    def change(body: bytes, headers: list[tuple[bytes, bytes]]) -> Answer:
        with Image.open(io.BytesIO(body)) as picture:
            out = io.BytesIO()
            picture.convert("RGB").save(out, "PNG")
        return 200, headers, out.getvalue()

    return _picture_edit(change)


def pictures_cut_short() -> ASGIApp:
    def change(body: bytes, headers: list[tuple[bytes, bytes]]) -> Answer:
        return 200, headers, body[: len(body) // 2]

    return _picture_edit(change)


def pictures_unlabelled() -> ASGIApp:
    def change(body: bytes, headers: list[tuple[bytes, bytes]]) -> Answer:
        kept = [(k, v) for k, v in headers if k.lower() != b"content-type"]
        return 200, [*kept, (b"content-type", b"application/octet-stream")], body

    return _picture_edit(change)


def pictures_gone() -> ASGIApp:
    def change(body: bytes, headers: list[tuple[bytes, bytes]]) -> Answer:
        gone = b'{"code": "task_not_found", "message": "expired", "data": null}'
        return 404, [(b"content-type", b"application/json")], gone

    return _picture_edit(change)


def relative_result_urls() -> ASGIApp:
    def edit(task: dict[str, Any], scope: Scope) -> None:
        task["result_url"] = relative(task["result_url"])
        if "result_urls" in task["metadata"]:
            task["metadata"]["result_urls"] = [relative(u) for u in task["metadata"]["result_urls"]]

    return drift_app(task_edit(edit))


# -- single answers off the schema ----------------------------------------------------------------
def schema_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[], ASGIApp]:
    return lambda: drift_app(task_edit(lambda task, scope: edit(task)))


def renamed_envelope() -> ASGIApp:
    def rename(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, body = answer
        if status == 200 and str(scope["path"]).startswith("/v1/"):
            data = json.loads(body)
            body = json.dumps({"code": 0, "msg": "ok", "result": data["data"]}).encode()
        return status, headers, body

    return drift_app(rename)
