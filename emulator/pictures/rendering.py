"""Placeholder result pictures: exact pixels, requested format, readable at a glance.

A picture is drawn once on a small palette canvas (longest side at most ``CANVAS_SIDE``) and
enlarged to the exact pixel size by nearest neighbour, so text keeps its share of the picture.
Rows repeat (vertical background bands, the label's box, enlargement); ``emulator.encoding``
encodes the enlargement from the canvas without building it whole.
Technique and figures: ``docs/rendering.md``.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageOps

from . import fonts
from .encoding import encode_jpeg, encode_png, encode_webp
from .privates import paste_indices

# What decides a picture lives in a module without Pillow (it is needed before any is drawn).
from .spec import MEDIA_TYPES, RenderSpec

#: Longest side of the canvas the picture is drawn on before it is enlarged.
CANVAS_SIDE = 1024
#: How much of the prompt is shown (the whole prompt would not be readable anyway).
PROMPT_EXCERPT = 140

# Palette layout: background colours first, then the label's ramp from box colour to white.
_BOX = 248
_WHITE = 255
_REFERENCE_COLOURS = 240
#: Text coverage 0..255 to the palette ramp _BOX.._WHITE.
_RAMP = [_BOX + (v * (_WHITE - _BOX) + 127) // 255 for v in range(256)]
_NEAREST = Image.Resampling.NEAREST


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
    if spec.fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown output format {spec.fmt!r}")
    if spec.fmt == "png":
        return encode_png(_draw(spec), spec.width, spec.height)
    encode = encode_jpeg if spec.fmt == "jpeg" else encode_webp
    return encode(draw_canvas(spec), spec.width, spec.height)


def draw_canvas(spec: RenderSpec) -> Image.Image:
    """The picture for ``spec`` at ``canvas_size``, in palette mode ("P")."""
    padded = _draw(spec)
    return padded.crop((1, 0, padded.width, padded.height))


def _draw(spec: RenderSpec) -> Image.Image:
    """The picture with an extra first column of zeros: the PNG filter byte of every row, so
    the PNG encoder gets its scanlines from one ``tobytes``."""
    w, h = canvas_size(spec.width, spec.height)
    digest = hashlib.sha256(
        f"{spec.seed}|{spec.task_id}|{spec.index}|{spec.model}|{spec.prompt}".encode()
    ).digest()
    img, palette = _background(spec, (w, h), digest)
    box = _colour(digest[0] / 255, 0.5, 0.2)
    # The label is anti-aliased through a ramp of palette entries from box colour to white.
    steps = _WHITE - _BOX
    for i in range(steps + 1):
        palette[3 * (_BOX + i) : 3 * (_BOX + i) + 3] = [
            round(c + (255 - c) * i / steps) for c in box
        ]
    img.putpalette(palette)
    _label(spec, img)
    # A frame marks the picture's true edges, so cropping in a client shows.
    edge = max(1, min(w, h) // 128)
    ImageDraw.Draw(img).rectangle((1, 0, w, h - 1), outline=_WHITE, width=edge)
    img.paste(0, (0, 0, 1, h))  # a label wider than a tiny canvas may have spilled over
    return img


def _colour(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _background(
    spec: RenderSpec, size: tuple[int, int], digest: bytes
) -> tuple[Image.Image, list[int]]:
    """The reference picture, or seeded vertical bands: every row alike, so rows repeat."""
    palette = [0] * 768
    if spec.reference is not None:
        try:
            with Image.open(io.BytesIO(spec.reference)) as ref:
                # Fit at (at most) the reference's own resolution: it is small, so this is cheap.
                scale = min(1.0, max(ref.size) / max(size))
                small = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
                picture = ImageOps.fit(ref.convert("RGB"), small, Image.Resampling.BILINEAR)
            # A colour wash per image index, so n pictures of one reference are told apart.
            wash = Image.new("RGB", small, _colour(digest[0] / 255, 0.6, 0.9))
            quantized = Image.blend(picture, wash, 0.15).quantize(
                _REFERENCE_COLOURS, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
            )
            colours = quantized.getpalette() or []
            palette[: len(colours)] = colours[: 3 * _REFERENCE_COLOURS]
            img = Image.new("P", (size[0] + 1, size[1]), 0)
            img.paste(quantized.resize(size, _NEAREST), (1, 0))
            return img, palette
        except (OSError, ValueError, SyntaxError):
            pass  # the reference was checked on submission; a broken one still gets a picture
    hue = digest[0] / 255
    palette[0:6] = [*_colour(hue, 0.45, 0.85), *_colour(hue + 0.08 + digest[2] / 2550, 0.55, 0.75)]
    w, h = size
    img = Image.new("P", (w + 1, h), 0)
    draw = ImageDraw.Draw(img)
    band = max(4, max(w, h) // (8 + digest[1] % 8))
    for start in range(digest[3] % band - band, w, band * 2):
        if start + band >= 1:  # column 0 is the PNG filter byte, not picture
            draw.rectangle((max(1, start + 1), 0, start + band, h - 1), fill=1)
    return img, palette


def _lines(
    spec: RenderSpec, chain: tuple[fonts.Face, ...], body_px: int, limit: float
) -> list[tuple[str, bool]]:
    """(text, is_heading) lines for the label; the prompt wrapped to ``limit`` pixels."""
    prompt = " ".join(spec.prompt.split())
    if len(prompt) > PROMPT_EXCERPT:
        prompt = prompt[: PROMPT_EXCERPT - 1].rstrip() + "…"
    wrapped = _wrap(prompt, lambda char: fonts.glyph(chain, body_px, char).advance, limit, 4)
    lines = [
        (spec.model, True),
        (f"{spec.width}x{spec.height} {spec.fmt}  ·  image {spec.index + 1}/{spec.count}", False),
    ]
    lines += [(f"“{line}”" if len(wrapped) == 1 else line, False) for line in wrapped]
    lines.append((spec.task_id, False))
    return lines


def _wrap(text: str, advance: Callable[[str], float], limit: float, max_lines: int) -> list[str]:
    """Lines of ``text`` at most ``limit`` wide (``advance``: each character's width), breaking
    at spaces, and inside a word only when it is wider than a line: Chinese and Japanese have no
    spaces and break between any two characters. Past ``max_lines`` the text is cut, and ends
    in "…"."""
    lines: list[str] = []
    current, used = "", 0.0
    space = advance(" ")
    for word in text.split(" "):
        size = sum(map(advance, word))
        gap = space if current else 0.0
        if used + gap + size <= limit:
            current, used = f"{current} {word}" if current else word, used + gap + size
        elif size <= limit:  # the word starts the next line
            lines.append(current)
            current, used = word, size
        else:  # a word wider than a line fills what is left of this one, then whole lines
            current, used = (f"{current} ", used + space) if current else ("", 0.0)
            for char in word:
                step = advance(char)
                if current.strip(" ") and used + step > limit:
                    lines.append(current.rstrip(" "))
                    current, used = "", 0.0
                current, used = current + char, used + step
    lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and sum(map(advance, last + "…")) > limit:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip(" ") + "…"]
    return lines


def _label(spec: RenderSpec, img: Image.Image) -> None:
    """Draw the centred label (white text on a dark box) onto the padded palette canvas."""
    w, h = img.width - 1, img.height
    # Text scales with the canvas so it keeps its share of the picture at any size.
    body_px = max(8, min(w // 22, h // 14))
    heading_px = max(10, round(body_px * 1.5))
    chain = fonts.faces()
    # At least a few characters a line, however narrow the picture (it may spill over).
    limit = max(w * 0.86, body_px * 4.0)
    lines = _lines(spec, chain, body_px, limit)
    masks = [fonts.line(chain, heading_px if big else body_px, text)[0] for text, big in lines]
    gap = max(2, body_px // 4)
    block_w = max(m.width for m in masks)
    block_h = sum(m.height for m in masks) + gap * (len(masks) - 1)
    pad = max(4, body_px // 2)
    mask = Image.new("L", (block_w + 2 * pad, block_h + 2 * pad), 0)
    y = pad
    for line in masks:
        mask.paste(line, (pad + (block_w - line.width) // 2, y))
        y += line.height + gap
    # Coverage 0..255 becomes the ramp _BOX.._WHITE: anti-aliased text without a colour image.
    # One byte per pixel either way: the mapped mask is copied straight into "P" (privates).
    paste_indices(img, mask, _RAMP, (1 + (w - mask.width) // 2, (h - mask.height) // 2))


__all__ = ["CANVAS_SIDE", "canvas_size", "draw_canvas", "render"]
