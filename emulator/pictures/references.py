"""Reference pictures (image2image): checked, decoded, and kept small.

SPEC D-11: URLs are never fetched. A multipart file or a ``data:`` URL must decode as a real
picture; the emulator keeps only a small thumbnail, enough for results to derive from it.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

from ..errors import InvalidRequest
from .containers import excess_blocks

#: Pillow format names accepted for reference pictures.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF")
THUMBNAIL_SIDE = 256
#: Rows of the reduced picture made per band when shrinking a large one.
_BAND_ROWS = 64
#: Base64 characters decoded per call (a multiple of 4).
_B64_SLICE = 1 << 20
_DATA_URL = re.compile(r"^data:(image/[a-zA-Z0-9.+-]+)?(;[a-zA-Z0-9=._-]+)*;base64,", re.ASCII)


def is_data_url(value: str) -> bool:
    return value.startswith("data:")


def decode_data_url(value: str, field: str, max_bytes: int) -> bytes:
    """The bytes of a base64 ``data:`` URL; 400 naming ``field`` when it is not one."""
    m = _DATA_URL.match(value)
    if m is None:
        raise InvalidRequest(
            f"{field} must be a base64 data: URL of an image (data:image/png;base64,...)",
            field=field,
        )
    payload = value[m.end() :]
    if len(payload) * 3 // 4 > max_bytes:
        raise InvalidRequest(f"{field} is larger than the limit of {max_bytes} bytes", field=field)
    # Padding only at the end, so that decoding in slices decodes exactly what one call would.
    padding = payload.find("=")
    if padding != -1 and padding < len(payload) - 2:
        raise InvalidRequest(f"{field} is not valid base64", field=field)
    try:
        # Slices of 1 MiB (a multiple of 4 characters): each C call holds the interpreter for
        # about a millisecond, so the event loop runs between them while a worker thread
        # decodes a 20 MiB picture (one call held it for ~250 ms).
        return b"".join(
            base64.b64decode(payload[i : i + _B64_SLICE], validate=True)
            for i in range(0, len(payload), _B64_SLICE)
        )
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field} is not valid base64", field=field) from None


def declared_pixels(data: bytes) -> int:
    """The pixel count a picture's header declares; 0 when it is not a readable picture
    (``thumbnail_of`` says what is wrong with it)."""
    from PIL import Image, UnidentifiedImageError  # lazily, as in thumbnail_of

    if excess_blocks(data) is not None:
        return 0  # too costly to open: thumbnail_of refuses it
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 0
    return max(0, int(width)) * max(0, int(height))


def thumbnail_of(data: bytes, field: str, max_pixels: int) -> bytes:
    """Check that ``data`` is a whole picture of an allowed type; return a PNG thumbnail.

    The pixel count is checked from the header before anything is decoded, so a
    decompression bomb costs nothing.
    """
    # Pillow is imported when a picture first comes: importing it is a noticeable part of the
    # emulator's start-up (the pytest fixture's), and most sessions never send one.
    from PIL import Image, UnidentifiedImageError

    excess = excess_blocks(data)  # before Pillow walks them, in Python
    if excess is not None:
        raise InvalidRequest(f"{field} holds {excess}", field=field)
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        # Pillow refuses at open (before our own check) beyond twice its MAX_IMAGE_PIXELS.
        raise InvalidRequest(
            f"{field} has more than the limit of {max_pixels} pixels", field=field
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InvalidRequest(
            f"{field} is not a picture: expected PNG, JPEG, WebP or GIF", field=field
        ) from None
    width, height = img.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise InvalidRequest(
            f"{field} is {width}x{height} pixels, more than the limit of {max_pixels} pixels",
            field=field,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # JPEG decodes at 1/2..1/8 scale when asked; the others decode whole.
            img.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            img.load()
            rgb = _shrink(img).convert("RGB")
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ):
        raise InvalidRequest(f"{field} is truncated or corrupt", field=field) from None
    out = io.BytesIO()
    rgb.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _shrink(img: Image.Image) -> Image.Image:
    """``img`` (loaded, any size) as a thumbnail, without a second full-size copy.

    Pillow converts RGBA to premultiplied alpha into a full-size copy to resize or reduce it,
    and converting to RGB first copies it too: 375 MiB at the peak for a 49-megapixel RGBA
    picture that is itself 187 MiB. So the picture is box-reduced a band at a time (each band
    copied and converted alone), and only the reduced picture is resized.
    """
    factor = max(1, max(img.size) // (2 * THUMBNAIL_SIDE))
    if factor == 1:
        return _thumbnail(_plain_mode(img))
    width, height = img.size
    rows = factor * _BAND_ROWS
    reduced: Image.Image | None = None
    for top in range(0, height, rows):
        band = _plain_mode(img.crop((0, top, width, min(height, top + rows)))).reduce(factor)
        if reduced is None:
            from PIL import Image

            reduced = Image.new(band.mode, (-(-width // factor), -(-height // factor)))
        reduced.paste(band, (0, top // factor))
    img.close()  # the full-size pixels go now, not when the caller's frame ends
    assert reduced is not None
    return _thumbnail(reduced)


def _plain_mode(img: Image.Image) -> Image.Image:
    """``img`` in a mode Pillow reduces and resizes (palette, CMYK, 16-bit: converted)."""
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return img
    return img.convert("RGBA" if "A" in img.mode or img.mode == "P" else "RGB")


def _thumbnail(img: Image.Image) -> Image.Image:
    img.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return img
