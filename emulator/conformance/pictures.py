"""The result pictures of a succeeded task: fetched without the key (like a CDN URL) and checked
against what the catalogue says the request produces: the URL answers, the bytes are the asked
``output_format`` (magic bytes), the Content-Type says the same, the pixels are the catalogue's.

The URL is opaque: it is fetched exactly as the service handed it out, redirects followed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PICTURE_CHECKS = (
    "result_picture_served",
    "result_picture_format",
    "result_picture_content_type",
    "result_picture_size",
)
#: Pictures larger than this are not read whole (an 8K PNG is ~20-60 MB).
MAX_PICTURE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Expected:
    """What one result picture must be."""

    output_format: str
    width: int
    height: int


def sniff_format(data: bytes) -> str | None:
    """png, jpeg or webp from the first bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return None


#: Pictures up to this many pixels are decoded whole (a cut or corrupt file fails to).
MAX_DECODED_PIXELS = 150_000_000


def pixel_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the picture's header, without decoding its pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            return int(picture.width), int(picture.height)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def decode_problem(data: bytes) -> str | None:
    """Why the picture does not decode (cut short, corrupt), or None."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as picture:
            if picture.width * picture.height <= MAX_DECODED_PIXELS:
                picture.load()
    except Exception as exc:  # Pillow raises many kinds for a damaged file
        return f"{type(exc).__name__}: {exc}"
    return None


def check_picture(
    label: str, status: int | None, content_type: str, data: bytes, expected: Expected
) -> list[tuple[str, str | None]]:
    """(check, problem or None) for each picture check; ``label`` names the picture."""
    if status != 200:
        said = "no answer" if status is None else f"{status}"
        return [("result_picture_served", f"{label} answered {said}, not the picture")]
    results: list[tuple[str, str | None]] = [("result_picture_served", None)]
    sniffed = sniff_format(data)
    media_type = content_type.split(";")[0].strip().lower()
    want = MEDIA_TYPES.get(expected.output_format, f"image/{expected.output_format}")
    if sniffed != expected.output_format:
        format_problem: str | None = (
            f"{label} is {sniffed or 'not a known picture format'} but output_format asked "
            f"{expected.output_format}"
        )
    else:
        damage = decode_problem(data)
        format_problem = None if damage is None else f"{label} does not decode: {damage}"
    results.append(("result_picture_format", format_problem))
    results.append(
        (
            "result_picture_content_type",
            None
            if media_type == want
            else f"{label} is served as {media_type or 'no Content-Type'!r}, not {want!r}",
        )
    )
    size = pixel_size(data)
    want_size = f"{expected.width}x{expected.height}"
    results.append(
        (
            "result_picture_size",
            None
            if size == (expected.width, expected.height)
            else f"{label} is {'unreadable' if size is None else f'{size[0]}x{size[1]}'} "
            f"pixels; the catalogue says {want_size}",
        )
    )
    return results
