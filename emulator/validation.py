"""Turn a submission (JSON or multipart) into a checked `Submission`, or a 4xx naming the field.

Type and presence rules live here; model-specific rules live in `Catalogue.plan`.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from .catalogue import Catalogue, OutputPlan
from .config import Settings
from .errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from .references import declared_pixels, decode_data_url, is_data_url, thumbnail_of
from .tasks import TaskType

TASK_TYPES: tuple[str, ...] = ("text2image", "image2image")
RESPONSE_FORMATS: tuple[str, ...] = ("url",)
#: The text fields of a submission; a repeated one is refused, other repeated fields ignored.
FORM_FIELDS = frozenset(
    [
        "model",
        "prompt",
        "task_type",
        "size",
        "aspect_ratio",
        "quality",
        "n",
        "output_format",
        "response_format",
    ]
)
#: Longest reference URL accepted, and its form (kept equal to the contract's pattern).
MAX_URL_CHARS = 8192
#: A multipart integer: an optional minus and at most 9 ASCII digits ("--1" is not one).
_FORM_INTEGER = re.compile(r"-?[0-9]{1,9}")
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


async def read_submission(request: Request, settings: Settings, catalogue: Catalogue) -> Submission:
    """Read and check the body of ``POST /v1/images/tasks``."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ("application/json", "multipart/form-data"):
        raise UnsupportedMediaType(
            "Content-Type must be application/json or multipart/form-data, got "
            + (repr(media_type) if media_type else "none")
        )
    body = await _read_body(request, settings.max_body_bytes)
    if media_type == "application/json":
        fields = _fields_from_json(body, settings.max_json_depth)
        files: list[UploadFile] = []
    else:
        fields, files = await _fields_from_multipart(request.headers, body, settings)
    # For the journal: what the validator saw (``request.state`` is this dict, reached slower).
    state = request.scope.setdefault("state", {})
    state["fields"] = fields
    state["files"] = [(f.filename or "image", f.size or 0) for f in files]
    if files or _has_data_url(fields):
        # Decoding pictures takes a while: not on the event loop, where it would stall every
        # other request.
        return await anyio.to_thread.run_sync(_build, fields, files, settings, catalogue)
    return _build(fields, files, settings, catalogue)


def _has_data_url(fields: Mapping[str, Any]) -> bool:
    values = [fields.get("image")]
    for key in ("images", "image_urls"):
        if isinstance(fields.get(key), list):
            values += fields[key]
    return any(isinstance(v, str) and is_data_url(v) for v in values)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    # The ASGI messages read directly, as ``request.stream()`` would (an async generator per
    # request is a measurable share of a submission); the request is marked as read the same way.
    chunks: list[bytes] = []
    total = 0
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        if chunk:
            chunks.append(chunk)
    request._stream_consumed = True
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise InvalidRequest(f"request body holds {name}, which is not a JSON number")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise InvalidRequest(f"field {key!r} appears more than once", field=key)
        obj[key] = value
    return obj


def _check_shape(data: Any, max_depth: int) -> None:
    """400 when the parsed body nests deeper than ``max_depth`` or holds text that cannot be
    encoded (a lone UTF-16 surrogate such as ``"\\ud800"``: valid JSON, but not Unicode).
    """
    if max_depth >= 1 and isinstance(data, dict) and _flat_and_encodable(data):
        return  # every ordinary submission: one level, plain values (a fast path)
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if depth > max_depth:
            raise InvalidRequest(f"request body is nested deeper than {max_depth} levels")
        pairs: list[tuple[str, Any]]
        if isinstance(item, dict):
            pairs = [(f"{path}.{k}" if path else k, v) for k, v in item.items()]
            keys = list(item)
        elif isinstance(item, list):
            pairs = [(f"{path}[{i}]", v) for i, v in enumerate(item)]
            keys = []
        else:
            continue
        for text in keys + [v for _, v in pairs if isinstance(v, str)]:
            if not _encodable(text):
                field = next((p for p, v in pairs if v is text), path or None)
                raise InvalidRequest(
                    f"{field or 'a field name'} is not valid Unicode: it contains a lone "
                    "surrogate (\\ud800-\\udfff)",
                    field=field,
                )
        stack.extend((v, depth + 1, p) for p, v in pairs if isinstance(v, dict | list))


def _flat_and_encodable(data: dict[str, Any]) -> bool:
    """True when no value is an object or array and every name and text encodes (the text
    joined encodes exactly when each piece does: UTF-8 refuses every surrogate)."""
    texts = list(data)
    for value in data.values():
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict | list):
            return False
    return _encodable("".join(texts))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: One decoder for the process: ``json.loads`` with hooks builds a decoder (and its scanner)
#: per call. Decoding bytes as ``json.loads`` does (``detect_encoding``, surrogatepass) keeps
#: every answer the same.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def _fields_from_json(body: bytes, max_depth: int) -> dict[str, Any]:
    if not body.strip():
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        data = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply") from None
    except ValueError:  # what json raises beyond JSONDecodeError: an integer of 4300+ digits
        raise InvalidRequest("request body holds a number with too many digits") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    _check_shape(data, max_depth)
    # "image_urls" is where multipart text `image` fields go; in JSON it is an unknown key.
    data.pop("image_urls", None)
    return data


async def _fields_from_multipart(
    headers: Headers, body: bytes, settings: Settings
) -> tuple[dict[str, Any], list[UploadFile]]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        headers,
        stream(),
        max_files=settings.max_reference_images,
        max_fields=settings.max_form_fields,
        max_part_size=max(1024 * 1024, settings.max_prompt_chars * 4),
    )
    try:
        form: FormData = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"multipart body is malformed: {exc.message}") from None
    fields: dict[str, Any] = {}
    files: list[UploadFile] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != "image":
                raise InvalidRequest(
                    f"file part {key!r} is not accepted; upload pictures as 'image'", field=key
                )
            files.append(value)
        elif key in ("images", "images[]"):
            fields.setdefault("images", []).append(value)
        elif key == "image":
            fields.setdefault("image_urls", []).append(value)
        elif key in fields:
            if key not in FORM_FIELDS:
                continue  # unknown fields are ignored however often they come, like JSON keys
            raise InvalidRequest(f"field {key!r} appears more than once", field=key)
        else:
            fields[key] = value
    if "n" in fields:
        text = fields["n"].strip()
        if _FORM_INTEGER.fullmatch(text) is None:
            raise InvalidRequest(f"n must be an integer, got {fields['n']!r:.40}", field="n")
        fields["n"] = int(text)
    return fields, files


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
        self.used += declared_pixels(data)
        if self.used > self.limit and self.used != declared_pixels(data):
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
