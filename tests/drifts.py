"""Services that each deviate from the documented API in one plausible way, and what conform must
say about each: the check that names it and a fragment of its one-line description.

Every drift is the real emulator behind one change (tests/conform_support.py). They cover every
cause of the conform issue: the life cycle seen across polls, result pictures, near-miss
requests, error bodies and headers, keys and latency, and single-answer schema drift.
`tests/test_conform_drift.py` runs each in the careful profile (in `make test`),
`tests/drift_full.py` in ``--full`` (`make contract-drift`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Scope

from emulator.catalogue import Catalogue

from .conform_support import (
    KEY,
    SECOND_KEY,
    Answer,
    drift_app,
    header,
    is_picture,
    is_poll,
    is_submit,
    json_request_edit,
    relative,
    task_edit,
)


@dataclass(frozen=True, slots=True)
class Drift:
    name: str
    #: Which cause of the conform issue it stands for.
    cause: str
    #: A fresh deviating app (state of a deviation, e.g. polls counted, is per app).
    build: Callable[[], ASGIApp]
    #: The check that must report it, and a fragment of the one-line description.
    check: str
    text: str
    #: Extra conform flags the deviation needs to be visible.
    args: tuple[str, ...] = ()


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
    def edit(task: dict[str, Any], scope: Scope) -> None:
        if task["status"] == "succeeded":
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


# -- near misses accepted ---------------------------------------------------------------------
def _lenient(edit: Callable[[dict[str, Any]], None]) -> Callable[[], ASGIApp]:
    def build() -> ASGIApp:
        return drift_app(request=json_request_edit(lambda body, scope: edit(body)))

    return build


def _any_gpt_size(body: dict[str, Any]) -> None:
    size = body.get("size")
    if body.get("model") == "gpt-image-2" and size and size not in Catalogue.load().gpt_sizes:
        body["size"] = "1024x1024"


def _gpt_ignores_aspect_ratio(body: dict[str, Any]) -> None:
    if body.get("model") == "gpt-image-2":
        body.pop("aspect_ratio", None)


def _webp_for_every_model(body: dict[str, Any]) -> None:
    if str(body.get("model", "")).startswith("NanoBanana") and body.get("output_format") == "webp":
        body["output_format"] = "png"


def _n_clamped(body: dict[str, Any]) -> None:
    if body.get("model") == "gpt-image-2" and isinstance(body.get("n"), int) and body["n"] > 8:
        body["n"] = 8


def _default_size(body: dict[str, Any]) -> None:
    if body.get("model") == "gpt-image-2" and body.get("size") is None:
        body["size"] = "1024x1024"


def _image2image_without_picture(body: dict[str, Any]) -> None:
    if body.get("task_type") == "image2image" and not (body.get("image") or body.get("images")):
        body.pop("task_type")


def _jpeg_by_default(body: dict[str, Any]) -> None:
    if body.get("output_format") is None:
        body["output_format"] = "jpeg"


def _wide_by_default(body: dict[str, Any]) -> None:
    if str(body.get("model", "")).startswith("NanoBanana") and body.get("aspect_ratio") is None:
        body["aspect_ratio"] = "16:9"


def _explicit_task_type_ignored(body: dict[str, Any]) -> None:
    if body.get("image") or body.get("images"):
        body.pop("task_type", None)


def _images_ignored(body: dict[str, Any]) -> None:
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


# -- error bodies and headers ---------------------------------------------------------------------
def _refusals(change: Callable[[Answer], Answer], status: int = 400) -> Callable[[], ASGIApp]:
    def build() -> ASGIApp:
        def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
            return change(answer) if answer[0] == status and is_submit(scope) else answer

        return drift_app(mutate)

    return build


def _vague(answer: Answer) -> Answer:
    body = json.dumps({"code": "invalid_request", "message": "invalid request", "data": None})
    return 400, answer[1], body.encode()


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


# -- single answers off the schema ----------------------------------------------------------------
def _schema_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[], ASGIApp]:
    return lambda: drift_app(task_edit(lambda task, scope: edit(task)))


def renamed_envelope() -> ASGIApp:
    def rename(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, body = answer
        if status == 200 and str(scope["path"]).startswith("/v1/"):
            data = json.loads(body)
            body = json.dumps({"code": 0, "msg": "ok", "result": data["data"]}).encode()
        return status, headers, body

    return drift_app(rename)


def _server_error(answer: Answer) -> Answer:
    return 500, answer[1], b'{"error": "boom"}'


LIFE = "life cycle across answers"
PICTURES = "result pictures"
NEAR = "near misses"
ERRORS = "error bodies and headers"
KEYS = "keys and latency"
SCHEMA = "one answer off the schema"
POLL = "GET /v1/images/tasks/{task_id}"
SUBMIT = "POST /v1/images/tasks"

DRIFTS: tuple[Drift, ...] = (
    Drift("progress_goes_back", LIFE, progress_goes_back, "progress_monotone",
          "progress went from 60% to 30% between two polls of task_"),
    Drift("status_goes_back", LIFE, status_goes_back, "status_order",
          "status went from 'processing' back to 'queued'"),
    Drift("terminal_not_final", LIFE, terminal_not_final, "terminal_final",
          "changed after it ended 'succeeded': status went from 'succeeded' to 'processing'"),
    Drift("submission_not_queued", LIFE, submission_not_queued, "submission_is_queued",
          "the submission answered status 'processing' at progress '5%'"),
    Drift("polls_answer_bare", LIFE, polls_answer_bare, "same_envelope",
          "but a poll answered a bare task"),
    Drift("fewer_pictures_than_asked", LIFE, fewer_pictures_than_asked, "result_count_matches_n",
          "asked for n=2 picture(s) and succeeded with result_count 1"),
    Drift("result_urls_disagree", LIFE, result_urls_disagree, "result_count_consistent",
          "result_count is 2 but result_urls lists 3 URL(s)"),
    Drift("result_url_not_first", LIFE, result_url_not_first, "result_count_consistent",
          "is not the first of result_urls"),
    Drift("task_type_not_inferred", LIFE, task_type_not_inferred, "task_type_inferred",
          "task_type is 'text2image' but the submission asks for 'image2image'"),
    # The 4th scenario: beyond the careful profile's default budget of 3 tasks.
    Drift("explicit_task_type_ignored", LIFE, _lenient(_explicit_task_type_ignored),
          "task_type_inferred", "the submission asks for 'text2image' (explicit task_type",
          args=("--max-tasks", "4")),
    Drift("processing_at_100", LIFE, processing_at_100, "response_schema_conformance",
          'data/progress: "100%" does not match'),
    Drift("succeeded_without_results", LIFE, succeeded_without_results,
          "response_schema_conformance", "0 is less than the minimum of 1"),
    Drift("poll_answers_another_id", LIFE, poll_answers_another_id, "task_id_stable",
          "answered task_id 'task_"),
    Drift("new_task_not_found_at_first", LIFE, new_task_not_found_at_first, "task_pollable",
          "right after it was created answered 404"),
    Drift("task_never_finishes", LIFE, task_never_finishes, "task_finishes",
          "was still 'processing' at 99%",
          args=("--poll-deadline", "0.3", "--poll-interval", "0.02")),
    Drift("pictures_wrong_size", PICTURES, pictures_wrong_size, "result_picture_size",
          "is 64x64 pixels; the catalogue says"),
    Drift("pictures_always_png", PICTURES, pictures_always_png, "result_picture_format",
          "is png but output_format asked"),
    Drift("pictures_unlabelled", PICTURES, pictures_unlabelled, "result_picture_content_type",
          "is served as 'application/octet-stream'"),
    Drift("pictures_gone", PICTURES, pictures_gone, "result_picture_served",
          "answered 404, not the picture"),
    Drift("relative_result_urls", PICTURES, relative_result_urls, "response_schema_conformance",
          'is not a "uri"'),
    Drift("pictures_cut_short", PICTURES, pictures_cut_short, "result_picture_format",
          "does not decode"),
    Drift("jpeg_by_default", PICTURES, _lenient(_jpeg_by_default), "result_picture_format",
          "is jpeg but output_format asked png"),
    Drift("wide_by_default", PICTURES, _lenient(_wide_by_default), "result_picture_size",
          "is 688x384 pixels; the catalogue says 512x512"),
    Drift("accepts_any_gpt_size", NEAR, _lenient(_any_gpt_size), "near_miss_refused",
          "accepted size '832x1248' is not one of gpt-image-2's 48 sizes"),
    Drift("gpt_ignores_aspect_ratio", NEAR, _lenient(_gpt_ignores_aspect_ratio),
          "near_miss_refused", "accepted aspect_ratio with gpt-image-2"),
    Drift("webp_for_every_model", NEAR, _lenient(_webp_for_every_model), "near_miss_refused",
          "accepted output_format 'webp' with NanoBanana2-0.5K"),
    Drift("n_clamped_not_refused", NEAR, _lenient(_n_clamped), "near_miss_refused",
          "accepted n=9 for gpt-image-2"),
    Drift("gpt_size_defaulted", NEAR, _lenient(_default_size), "near_miss_refused",
          "accepted gpt-image-2 without size"),
    Drift("image2image_without_picture", NEAR, _lenient(_image2image_without_picture),
          "near_miss_refused", "accepted task_type image2image without image or images"),
    Drift("submissions_without_key", NEAR, submissions_without_key, "near_miss_refused",
          "accepted a submission without a key"),
    Drift("images_ignored", NEAR, _lenient(_images_ignored), "near_miss_refused",
          "accepted images ['not-a-url']"),
    Drift("multipart_unsupported", NEAR, multipart_unsupported, "near_miss_refused",
          "refused a multipart submission with a picture and no prompt with 415, not 400"),
    Drift("any_content_type_read_as_json", NEAR, any_content_type_read_as_json,
          "near_miss_refused", "accepted a JSON body sent as text/plain"),
    Drift("vague_refusals", ERRORS, _refusals(_vague), "refusal_names_field",
          "does not name 'output_format': 'invalid request'"),
    Drift("refusals_are_422", ERRORS, _refusals(lambda a: (422, a[1], a[2])), "near_miss_refused",
          "with 422, not 400"),
    Drift("refusals_without_envelope", ERRORS,
          _refusals(lambda a: (400, a[1], b'{"error": "bad request"}')),
          "response_schema_conformance", f"{SUBMIT} answered 400"),
    Drift("server_error_on_bad_input", ERRORS, _refusals(_server_error), "not_a_server_error",
          f"{SUBMIT} answered 500"),
    Drift("relay_style_401", ERRORS, relay_style_401, "response_schema_conformance",
          '"error" is a required property'),
    Drift("polls_without_key_allowed", ERRORS, polls_without_key_allowed, "auth_required",
          f"{POLL} without a key answered 404, not 401"),
    Drift("rate_limit_without_retry_after", ERRORS, rate_limit_without_retry_after,
          "response_headers_conformance", "Retry-After"),
    Drift("tasks_shared_between_keys", KEYS, tasks_shared_between_keys, "key_isolation",
          "a second key can read task_", args=("--second-api-key", SECOND_KEY)),
    Drift("slow_submissions", KEYS, slow_submissions, "max_response_time",
          f"{SUBMIT} answered 200: Response time limit exceeded",
          args=("--max-response-time", "0.3")),
    Drift("status_vocabulary", SCHEMA, _schema_edit(lambda t: t.update(status="pending")),
          "response_schema_conformance", '"pending" is not one of'),
    Drift("progress_as_number", SCHEMA, _schema_edit(lambda t: t.update(progress=0)),
          "response_schema_conformance", '0 is not of type "string"'),
    Drift("metadata_missing", SCHEMA, _schema_edit(lambda t: t.pop("metadata")),
          "response_schema_conformance", '"metadata" is a required property'),
    Drift("renamed_envelope", SCHEMA, renamed_envelope, "response_schema_conformance",
          '"data" is a required property'),
)  # fmt: skip
