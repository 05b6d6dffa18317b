"""Placeholder result pictures: exact pixels, requested format, readable at a glance.

A picture is drawn on a small canvas (longest side at most ``CANVAS_SIDE``) and only then
enlarged to the catalogue's exact pixel size with nearest-neighbour scaling. Drawing text on a
12672x5376 picture would cost seconds and hundreds of megabytes; drawing it on a 1024-pixel
canvas costs milliseconds, and the enlarged text stays sharp and in proportion, so it is as
readable in a 128-pixel thumbnail as in the full picture.

PNG pictures are enlarged in palette mode (one byte per pixel), which keeps an 8K render near
70 MB; JPEG needs full colour (three bytes per pixel). Figures are in ``docs/rendering.md``.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import textwrap
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageDraw, ImageFont, ImageOps

ImageFormat = Literal["png", "jpeg", "webp"]

#: The Content-Type served for each output format.
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

#: Longest side of the canvas the picture is drawn on before it is enlarged.
CANVAS_SIDE = 1024
#: How much of the prompt is shown (the whole prompt would not be readable anyway).
PROMPT_EXCERPT = 140

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


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


def canvas_size(width: int, height: int) -> tuple[int, int]:
    """The size the picture is drawn at: ``width``x``height`` shrunk to fit ``CANVAS_SIDE``."""
    longest = max(width, height)
    if longest <= CANVAS_SIDE:
        return width, height
    scale = CANVAS_SIDE / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def render(spec: RenderSpec) -> bytes:
    """The encoded picture for ``spec``: exactly ``spec.width``x``spec.height`` in ``spec.fmt``."""
    if spec.width < 1 or spec.height < 1:
        raise ValueError(f"cannot render a {spec.width}x{spec.height} picture")
    if spec.fmt not in _PIL_FORMATS:
        raise ValueError(f"unknown output format {spec.fmt!r}")
    canvas = _draw(spec, canvas_size(spec.width, spec.height))
    out = io.BytesIO()
    if spec.fmt == "png":
        # A palette keeps the enlarged picture at one byte per pixel; NEAREST keeps the palette.
        small = canvas.quantize(
            colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        big = _enlarge(small, spec)
        big.save(out, "PNG", compress_level=1)
    elif spec.fmt == "jpeg":
        big = _enlarge(canvas, spec)
        big.save(out, "JPEG", quality=85)
    else:
        big = _enlarge(canvas, spec)
        big.save(out, "WEBP", quality=80, method=0)
    return out.getvalue()


def _enlarge(img: Image.Image, spec: RenderSpec) -> Image.Image:
    if img.size == (spec.width, spec.height):
        return img
    return img.resize((spec.width, spec.height), Image.Resampling.NEAREST)


def _digest(spec: RenderSpec) -> bytes:
    text = f"{spec.seed}|{spec.task_id}|{spec.index}|{spec.model}|{spec.prompt}"
    return hashlib.sha256(text.encode("utf-8")).digest()


def _colour(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _background(spec: RenderSpec, size: tuple[int, int]) -> Image.Image:
    """Seeded diagonal bands (so every picture of a task differs), or the reference picture."""
    if spec.reference is not None:
        try:
            with Image.open(io.BytesIO(spec.reference)) as ref:
                picture = ImageOps.fit(ref.convert("RGB"), size, Image.Resampling.BILINEAR)
            # A colour wash per image index, so n pictures of one reference are told apart.
            wash = Image.new("RGB", size, _colour(_digest(spec)[0] / 255, 0.6, 0.9))
            return Image.blend(picture, wash, 0.15)
        except (OSError, ValueError, SyntaxError):
            pass  # the reference was checked on submission; a broken one still gets a picture
    digest = _digest(spec)
    hue = digest[0] / 255
    img = Image.new("RGB", size, _colour(hue, 0.45, 0.85))
    draw = ImageDraw.Draw(img)
    w, h = size
    band = max(8, max(w, h) // (8 + digest[1] % 8))
    other = _colour(hue + 0.08 + digest[2] / 2550, 0.55, 0.75)
    for start in range(-h, w, band * 2):
        draw.polygon(
            [(start, 0), (start + band, 0), (start + band + h, h), (start + h, h)], fill=other
        )
    return img


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _lines(spec: RenderSpec, chars_per_line: int) -> list[tuple[str, bool]]:
    """(text, is_heading) lines for the label."""
    prompt = " ".join(spec.prompt.split())
    if len(prompt) > PROMPT_EXCERPT:
        prompt = prompt[: PROMPT_EXCERPT - 1].rstrip() + "…"
    wrapped = textwrap.wrap(prompt, width=max(8, chars_per_line), max_lines=4) or [""]
    lines = [
        (spec.model, True),
        (f"{spec.width}x{spec.height} {spec.fmt}  ·  image {spec.index + 1}/{spec.count}", False),
    ]
    lines += [(f"“{line}”" if len(wrapped) == 1 else line, False) for line in wrapped]
    lines.append((spec.task_id, False))
    return lines


def _draw(spec: RenderSpec, size: tuple[int, int]) -> Image.Image:
    img = _background(spec, size)
    w, h = size
    # Text scales with the canvas so it keeps its share of the picture at any size.
    body_px = max(8, min(w // 26, h // 11))
    heading_px = max(10, round(body_px * 1.5))
    body, heading = _font(body_px), _font(heading_px)
    chars = max(8, int((w * 0.86) / (body_px * 0.55)))
    lines = _lines(spec, chars)
    draw = ImageDraw.Draw(img, "RGBA")
    boxes = [draw.textbbox((0, 0), text, font=heading if big else body) for text, big in lines]
    gap = max(2, body_px // 3)
    block_w = max(box[2] - box[0] for box in boxes)
    block_h = sum(box[3] - box[1] for box in boxes) + gap * (len(lines) - 1)
    pad = max(4, body_px // 2)
    left = max(0, (w - block_w) // 2)
    top = max(0, (h - block_h) // 2)
    draw.rectangle(
        (left - pad, top - pad, left + block_w + pad, top + block_h + pad), fill=(0, 0, 0, 150)
    )
    y = top
    for (text, big), box in zip(lines, boxes, strict=True):
        line_w = box[2] - box[0]
        x = (w - line_w) // 2
        draw.text((x - box[0], y - box[1]), text, font=heading if big else body, fill="white")
        y += box[3] - box[1] + gap
    # A frame marks the picture's true edges, so cropping in a client shows.
    edge = max(1, min(w, h) // 128)
    draw.rectangle((0, 0, w - 1, h - 1), outline=(255, 255, 255, 200), width=edge)
    return img


class RenderCache:
    """Rendered pictures kept by key, least recently used first out, bounded by total bytes.

    A picture larger than the whole budget is not kept; ``max_bytes=0`` keeps nothing.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: Hashable) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: Hashable, data: bytes) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= len(old)
        if len(data) > self.max_bytes:
            return
        self._items[key] = data
        self._size += len(data)
        while self._size > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._size -= len(evicted)

    def clear(self) -> None:
        self._items.clear()
        self._size = 0

    @property
    def size_bytes(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["MEDIA_TYPES", "ImageFormat", "RenderCache", "RenderSpec", "canvas_size", "render"]
