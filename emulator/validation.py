"""Turn a submission (JSON or multipart) into a checked `Submission`, or a 4xx naming the field.

Type and presence rules live here; model-specific rules live in `Catalogue.plan`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.requests import Request

from .bodies import fields_from_json, fields_from_multipart, read_body
from .catalogue import Catalogue, OutputPlan
from .config import Settings
from .errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from .references import declared_pixels, decode_data_url, is_data_url, thumbnail_of
from .slots import Slots
from .tasks import TaskType

TASK_TYPES: tuple[str, ...] = ("text2image", "image2image")
RESPONSE_FORMATS: tuple[str, ...] = ("url",)
#: JSON bodies larger than this are parsed off the event loop (smaller ones cost < 1 ms).
OFF_LOOP_BYTES = 1024 * 1024
#: Longest reference URL accepted, and its form (kept equal to the contract's pattern).
MAX_URL_CHARS = 8192
_REFERENCE_URL = re.compile(r"https?://[!-Z^-~]+")


@dataclass(frozen=True, slots=True)
class Submission:
    """An accepted request: what to make, from what."""

    prompt: str
    task_type: TaskType
    plan: OutputPlan
    #: Reference URLs in order (data: URLs shortened for display).
    references: tuple[str, ...]
    #: Thumbnail of the first reference picture whose bytes came with the request.
    picture: bytes | None
    #: http(s) reference URLs (candidates for the emulator's own result URLs).
    urls: tuple[str, ...]


async def read_submission(
    request: Request, settings: Settings, catalogue: Catalogue, decode_slots: Slots | None = None
) -> Submission:
    """Read and check the body of ``POST /v1/images/tasks``; its pictures are decoded in a
    worker thread, in one of ``decode_slots`` (the emulator's bound on decodes at once)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ("application/json", "multipart/form-data"):
        raise UnsupportedMediaType(
            "Content-Type must be application/json or multipart/form-data, got "
            + (repr(media_type) if media_type else "none")
        )
    body = await read_body(request, settings.max_body_bytes)
    if media_type == "application/json":
        limits = (settings.max_json_depth, settings.max_json_items)
        if len(body) > OFF_LOOP_BYTES:
            # Counting, decoding and parsing megabytes takes tens of milliseconds per step; in
            # a worker thread the event loop gets the interpreter between steps.
            fields = await anyio.to_thread.run_sync(fields_from_json, body, *limits)
        else:
            fields = fields_from_json(body, *limits)
        files: list[UploadFile] = []
    else:
        fields, files = await fields_from_multipart(request.headers, body, settings)
    # For the journal: what the validator saw (``request.state`` is this dict, reached slower).
    state = request.scope.setdefault("state", {})
    state["fields"] = fields
    state["files"] = [(f.filename or "image", f.size or 0) for f in files]
    if files or _has_data_url(fields):
        # Decoding pictures takes a while: not on the event loop, where it would stall every
        # other request. And hundreds of megabytes: only as many at once as there are slots.
        if decode_slots is None:
            return await anyio.to_thread.run_sync(_build, fields, files, settings, catalogue)
        async with decode_slots.held():
            return await anyio.to_thread.run_sync(_build, fields, files, settings, catalogue)
    return _build(fields, files, settings, catalogue)


def _has_data_url(fields: Mapping[str, Any]) -> bool:
    values = [fields.get("image")]
    for key in ("images", "image_urls"):
        if isinstance(fields.get(key), list):
            values += fields[key]
    return any(isinstance(v, str) and is_data_url(v) for v in values)


def _check_reference_form(name: str, value: str) -> None:
    """400 unless ``value`` is a data: URL, or an http(s) URL of printable ASCII without
    spaces, brackets or backslashes (the contract's pattern; ``http://[`` cannot be parsed).
    """
    if is_data_url(value):
        return
    if len(value) > MAX_URL_CHARS or not _REFERENCE_URL.fullmatch(value):
        raise InvalidRequest(
            f"{name} must be an http(s) URL or a data: URL of a picture (a URL: printable "
            f"ASCII without spaces, brackets or backslashes, at most {MAX_URL_CHARS} characters)",
            field=name,
        )


def _optional_str(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string", field=key)
    return value


def _url_list(fields: Mapping[str, Any], settings: Settings) -> list[tuple[str, str]]:
    """(field name, value) of every reference given as text, in order."""
    out: list[tuple[str, str]] = []
    image = fields.get("image")
    if image is not None:
        if not isinstance(image, str):
            raise InvalidRequest("image must be a string (a picture URL)", field="image")
        out.append(("image", image))
    for value in fields.get("image_urls", []):
        out.append(("image", value))
    images = fields.get("images")
    if images is not None:
        if not isinstance(images, list) or not all(isinstance(v, str) for v in images):
            raise InvalidRequest("images must be an array of picture URLs", field="images")
        if not images:
            raise InvalidRequest("images must contain at least one URL", field="images")
        out.extend((f"images[{i}]", v) for i, v in enumerate(images))
    return out


class _PixelBudget:
    """All the pictures of one request together may hold ``limit`` pixels (not each: sixteen
    pictures just under the limit would cost seconds and hundreds of MB to check)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, data: bytes, field: str) -> None:
        pixels = declared_pixels(data)
        self.used += pixels
        # One picture alone over the limit is thumbnail_of's to refuse, with its own size.
        if self.used > self.limit and pixels < self.used:
            raise InvalidRequest(
                f"{field}: the reference pictures of one request hold {self.used} pixels "
                f"together, more than the limit of {self.limit} pixels",
                field=field,
            )


def _build(
    fields: Mapping[str, Any], files: list[UploadFile], settings: Settings, catalogue: Catalogue
) -> Submission:
    model = fields.get("model")
    if model is None or model == "":
        raise InvalidRequest("model is required", field="model")
    if not isinstance(model, str):
        raise InvalidRequest("model must be a string", field="model")
    prompt = fields.get("prompt")
    if prompt is None:
        raise InvalidRequest("prompt is required", field="prompt")
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt must be a string", field="prompt")
    if prompt == "":
        raise InvalidRequest("prompt must not be empty", field="prompt")
    if len(prompt) > settings.max_prompt_chars:
        raise InvalidRequest(
            f"prompt is longer than the limit of {settings.max_prompt_chars} characters",
            field="prompt",
        )
    task_type = _optional_str(fields, "task_type")
    if task_type is not None and task_type not in TASK_TYPES:
        raise InvalidRequest(
            f"task_type must be text2image or image2image, got {task_type!r}", field="task_type"
        )
    n = fields.get("n")
    if isinstance(n, float) and n.is_integer():
        n = int(n)  # JSON has one number type: 4.0 is the integer 4 (as JSON Schema says)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool)):
        raise InvalidRequest(f"n must be an integer, got {n!r}", field="n")
    response_format = _optional_str(fields, "response_format")
    if response_format is not None and response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"response_format must be 'url', got {response_format!r}", field="response_format"
        )
    plan = catalogue.plan(
        model=model,
        size=_optional_str(fields, "size"),
        aspect_ratio=_optional_str(fields, "aspect_ratio"),
        quality=_optional_str(fields, "quality"),
        n=n,
        output_format=_optional_str(fields, "output_format"),
    )

    texts = _url_list(fields, settings)
    # The limit is on the `images` list (the contract's maxItems); `image` is one more picture
    # and multipart files are capped by the form parser.
    if sum(name.startswith("images[") for name, _ in texts) > settings.max_reference_images:
        raise InvalidRequest(
            f"at most {settings.max_reference_images} reference pictures are accepted "
            "in image and images",
            field="images",
        )
    inferred: TaskType = "image2image" if texts or files else "text2image"
    chosen: TaskType = inferred if task_type is None else task_type  # type: ignore[assignment]
    if chosen == "image2image" and not (texts or files):
        raise InvalidRequest(
            "task_type image2image needs a reference picture in image or images", field="image"
        )

    for name, value in texts:
        # A malformed reference is refused even when an explicit text2image ignores it.
        _check_reference_form(name, value)
    references: list[str] = []
    urls: list[str] = []
    picture: bytes | None = None
    budget = _PixelBudget(settings.max_reference_pixels)
    if chosen == "image2image":
        for name, value in texts:
            if is_data_url(value):
                data = decode_data_url(value, name, settings.max_upload_bytes)
                budget.spend(data, name)
                thumb = thumbnail_of(data, name, settings.max_reference_pixels)
                picture = picture or thumb
                references.append(value[: value.find(",") + 1] + "…")
            else:
                references.append(value)
                urls.append(value)
        for upload in files:
            data = upload.file.read(settings.max_upload_bytes + 1)
            if len(data) > settings.max_upload_bytes:
                raise PayloadTooLarge(
                    f"uploaded image {upload.filename!r} is larger than the limit of "
                    f"{settings.max_upload_bytes} bytes"
                )
            budget.spend(data, "image")
            thumb = thumbnail_of(data, "image", settings.max_reference_pixels)
            picture = picture or thumb
            references.append(f"upload:{upload.filename or 'image'}")
    return Submission(
        prompt=prompt,
        task_type=chosen,
        plan=plan,
        references=tuple(references),
        picture=picture,
        urls=tuple(urls),
    )


__all__ = ["RESPONSE_FORMATS", "TASK_TYPES", "Submission", "read_submission"]
