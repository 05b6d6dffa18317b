"""What decides a result picture (`RenderSpec`), and the formats pictures are served in.

No Pillow here: every layer that names a picture imports this, and only drawing needs Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ImageFormat = Literal["png", "jpeg", "webp"]

#: The Content-Type served for each output format.
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """Everything that decides a result picture; equal specs give identical bytes."""

    width: int
    height: int
    fmt: ImageFormat
    model: str
    prompt: str
    task_id: str
    index: int
    count: int
    seed: int
    #: A small picture (any Pillow-readable bytes) the result derives from: image2image.
    reference: bytes | None = None


__all__ = ["MEDIA_TYPES", "ImageFormat", "RenderSpec"]
