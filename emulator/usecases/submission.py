"""The rules of a submission: a checked `Submission`, or a 4xx naming the field and the rule.

Type and presence rules live here; model-specific rules live in `Catalogue.plan`. Reference
pictures that came with the request are decoded and kept small (``emulator.pictures.references``):
this runs in a worker thread (``emulator.http.submission`` reads the request).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

from ..config import Settings
from ..core.catalogue import Catalogue, OutputPlan
from ..core.checks import is_blank, shown
from ..core.frozen import builder
from ..core.tasks import TaskType
from ..errors import InvalidRequest, PayloadTooLarge
from ..pictures.references import declared_pixels, decode_data_url, is_data_url, thumbnail_of

#: The request fields of SPEC 2.2. Any other is ignored, as relays do, and listed in the
#: journal entry so that a test can see a misspelt one (D-13).
FIELDS = frozenset(
    {
        "model",
        "prompt",
        "task_type",
        "image",
        "images",
        "size",
        "aspect_ratio",
        "quality",
        "n",
        "output_format",
        "response_format",
    }
)
TASK_TYPES: tuple[str, ...] = ("text2image", "image2image")
RESPONSE_FORMATS: tuple[str, ...] = ("url",)
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


#: ``Submission(...)`` at the cost of a plain class (``emulator.core.frozen``).
_SubmissionBuilder = builder(Submission)


class Upload(Protocol):
    """An uploaded file part (Starlette's ``UploadFile`` is one)."""

    @property
    def filename(self) -> str | None: ...

    @property
    def file(self) -> IO[bytes]: ...


def unknown_fields(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that are not request fields, in order (D-13)."""
    return [name for name in names if name not in FIELDS]


#: The fields that may hold reference pictures (``image_urls``: multipart text ``image`` parts).
PICTURE_FIELDS = frozenset({"image", "images", "image_urls"})


def has_data_url(fields: Mapping[str, Any]) -> bool:
    if PICTURE_FIELDS.isdisjoint(fields):
        return False  # most submissions: text only, nothing to look at
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
    if PICTURE_FIELDS.isdisjoint(fields):
        return out
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


def build_submission(
    fields: Mapping[str, Any], files: Sequence[Upload], settings: Settings, catalogue: Catalogue
) -> Submission:
    """The checked submission of ``fields`` and ``files``; every rule broken is a 4xx naming
    its field (the model's own rules: ``Catalogue.plan``)."""
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
    if is_blank(prompt):  # D-12: "   " or "\u3000" asks for nothing, like ""
        raise InvalidRequest("prompt must not be blank (empty or only whitespace)", field="prompt")
    if len(prompt) > settings.max_prompt_chars:
        raise InvalidRequest(
            f"prompt is longer than the limit of {settings.max_prompt_chars} characters",
            field="prompt",
        )
    task_type = _optional_str(fields, "task_type")
    if task_type is not None and task_type not in TASK_TYPES:
        raise InvalidRequest(
            f"task_type must be text2image or image2image, got {shown(task_type)}",
            field="task_type",
        )
    n = fields.get("n")
    if isinstance(n, float) and n.is_integer():
        n = int(n)  # JSON has one number type: 4.0 is the integer 4 (as JSON Schema says)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool)):
        raise InvalidRequest(f"n must be an integer, got {shown(n)}", field="n")
    response_format = _optional_str(fields, "response_format")
    if response_format is not None and response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"response_format must be 'url', got {shown(response_format)}", field="response_format"
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
    # The limit is on the `images` list (the contract's maxItems; SPEC is silent on a count);
    # `image` is one more picture and multipart files are capped by the form parser.
    listed = sum(name.startswith("images[") for name, _ in texts) if texts else 0
    if listed > settings.max_reference_images:
        raise InvalidRequest(
            f"at most {settings.max_reference_images} reference pictures are accepted "
            f"in images, got {listed} (a picture in image is not counted)",
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
    if chosen == "image2image":
        budget = _PixelBudget(settings.max_reference_pixels)
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
                    f"uploaded image {shown(upload.filename)} is larger than the limit of "
                    f"{settings.max_upload_bytes} bytes"
                )
            budget.spend(data, "image")
            thumb = thumbnail_of(data, "image", settings.max_reference_pixels)
            picture = picture or thumb
            references.append(f"upload:{upload.filename or 'image'}")
    # Positional: a keyword call of the builder costs ~0.5k instructions a keyword.
    return _SubmissionBuilder(prompt, chosen, plan, tuple(references), picture, tuple(urls))


__all__ = [
    "FIELDS",
    "PICTURE_FIELDS",
    "RESPONSE_FORMATS",
    "TASK_TYPES",
    "Submission",
    "Upload",
    "build_submission",
    "has_data_url",
    "unknown_fields",
]
