"""The fonts a label is drawn with: each character from the first font that has a glyph for it,
and a character that no font has as its code point, so a box (a font's .notdef, "tofu") is
never drawn.

Pillow's built-in font (Aileron, basic Latin) comes first, then the files named by
``IMAGE_TASK_EMULATOR_FONTS`` (``os.pathsep``-separated), then those of ``data/fonts.toml`` that
exist on this machine: WenQuanYi Micro Hei (Chinese, Japanese kana, Korean hangul, accented
Latin) and Noto Color Emoji, which ``make setup`` installs, and a few optional others. Files
are found by path: neither fontconfig nor any font service is needed. Which fonts exist is
looked up once per process (and per value of the variable).

Whether a font has a glyph is told with Pillow's documented font calls: FreeType draws a
character that the font does not map as the font's glyph 0 (.notdef), so a glyph drawn
exactly like a character no font maps (U+10FFFF, a noncharacter) is missing. An empty .notdef
makes empty glyphs count as missing too; that only ever turns an invisible glyph into a code
point.

Format characters (joiners, variation selectors, direction marks, soft hyphens: Unicode's
category Cf) draw nothing, as in any text renderer; an emoji sequence therefore shows as its
parts. Glyphs and whole lines are cached, since the model, the size line and the prompt recur
across the pictures of a task. Technique: ``docs/rendering.md``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tomllib
import unicodedata
from importlib import resources
from typing import TYPE_CHECKING, NamedTuple

from PIL import Image, ImageDraw, ImageFont

from .privates import core, ink_paster

if TYPE_CHECKING:
    from .privates import Core

#: Font files tried, in order, after Pillow's font and before the table's (``os.pathsep``
#: between them). Not an ``EMULATOR_`` setting (those are refused when unknown, and belong to
#: one emulator): fonts are the process's, like the glyph caches.
FONTS_ENV = "IMAGE_TASK_EMULATOR_FONTS"

#: A noncharacter: no font maps it, so every font draws it as its .notdef.
_UNMAPPED = "\U0010ffff"
#: The size at which whether a font has a glyph is told (see ``covers``).
_PROBE_PX = 24
#: Layout without HarfBuzz: one character at a time, and the same whether or not Pillow was
#: built with libraqm, so a picture does not depend on it.
_BASIC = ImageFont.Layout.BASIC

log = logging.getLogger(__name__)


class Face(NamedTuple):
    """One font: a file (``""``: Pillow's built-in font) and the face in it."""

    path: str
    #: The face within a collection (.ttc).
    face_index: int = 0
    #: A bitmap-only font (colour emoji) has glyphs at this one pixel size, scaled from it;
    #: 0 for a scalable font.
    strike: int = 0


#: Pillow's built-in font: basic Latin, always there (Pillow with FreeType is required).
BUILTIN = Face("")


class Candidate(NamedTuple):
    """A font of ``data/fonts.toml``."""

    face: Face
    #: The Debian package that installs it.
    package: str
    #: ``make setup`` installs it, and the tests fail without it.
    setup: bool


class Glyph(NamedTuple):
    """One character, ready to paste: coverage 0..255 and where it goes."""

    #: None when nothing is drawn (a space, a format character).
    mask: Core | None
    #: left, top, right, bottom relative to the pen on the baseline.
    box: tuple[int, int, int, int]
    advance: float
    #: The font it comes from; None: drawn as its code point, or nothing.
    face: Face | None


@functools.cache
def candidates() -> tuple[Candidate, ...]:
    """The fonts of ``data/fonts.toml``, in their order."""
    text = resources.files("emulator").joinpath("data/fonts.toml").read_text("utf-8")
    return tuple(
        Candidate(
            Face(str(entry["path"]), int(entry.get("face_index", 0)), int(entry.get("strike", 0))),
            str(entry.get("package", "")),
            bool(entry.get("setup", False)),
        )
        for entry in tomllib.loads(text)["fonts"]
    )


def faces() -> tuple[Face, ...]:
    """The fonts a label is drawn with, in the order they are tried."""
    return _faces(os.environ.get(FONTS_ENV, ""))


@functools.lru_cache(maxsize=8)
def _faces(override: str) -> tuple[Face, ...]:
    # A named file is checked now (it is the user's word; a typo is said at once); the table's
    # only exist-checked, and loaded with the first character Pillow's font lacks, so a Latin
    # label costs no font loading.
    named = [Face(path) for path in override.split(os.pathsep) if path]
    found = [BUILTIN]
    for face in named:
        if face not in found and _usable(face):
            found.append(face)
    for candidate in candidates():
        if candidate.face not in found and os.path.isfile(candidate.face.path):
            found.append(candidate.face)
    return tuple(found)


@functools.cache
def _usable(face: Face) -> bool:
    """Whether Pillow can load ``face``; a font that cannot be is left out, and said once."""
    try:
        _font(face, face.strike or _PROBE_PX)
    except OSError as exc:  # FreeType's errors, a missing file and an unreadable one alike
        log.warning("font %r (%s or data/fonts.toml) is left out: %s", face.path, FONTS_ENV, exc)
        return False
    return True


def missing_packages() -> list[str]:
    """The Debian packages of the fonts ``make setup`` installs whose files are missing here."""
    return [c.package for c in candidates() if c.setup and not os.path.isfile(c.face.path)]


@functools.lru_cache(maxsize=64)
def _font(face: Face, px: int) -> ImageFont.FreeTypeFont:
    if face == BUILTIN:
        font = ImageFont.load_default(size=px)
        if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow without FreeType
            raise RuntimeError("Pillow was built without FreeType: no font draws labels")
        return font
    return ImageFont.truetype(face.path, px, index=face.face_index, layout_engine=_BASIC)


class _Colour(NamedTuple):
    """A colour glyph as coverage at its font's strike, transparent margins cropped."""

    picture: Image.Image | None
    box: tuple[int, int, int, int]
    advance: float


@functools.lru_cache(maxsize=256)
def _colour(face: Face, char: str) -> _Colour:
    """``char`` from a colour bitmap font, drawn once (FreeType decodes a PNG each time).

    Coverage is the glyph's brightness seen on black: the label is white on a dark box, so a
    yellow face is light and its eyes and mouth dark (Noto's black is a dark grey: it shows).
    """
    font = _font(face, face.strike)
    advance = float(font.getlength(char))
    # Drawn on a square twice the strike with the pen well inside, not measured first: a
    # measure decodes the glyph's PNG as a drawing does, and these glyphs fit an em and a half.
    side = 2 * face.strike
    pen = (face.strike // 2, side - face.strike // 2)
    colour = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(colour).text(pen, char, font=font, anchor="ls", embedded_color=True)
    alpha = colour.getchannel("A")
    content = alpha.getbbox()
    if content is None:
        return _Colour(None, (0, 0, 0, 0), advance)
    on_black = Image.alpha_composite(Image.new("RGBA", colour.size, (0, 0, 0, 255)), colour)
    picture = on_black.convert("L").crop(content)
    x, y = content[0] - pen[0], content[1] - pen[1]
    return _Colour(picture, (x, y, x + picture.width, y + picture.height), advance)


def _probe(face: Face, char: str) -> tuple[tuple[int, int, int, int], float, bytes | None]:
    """How ``face`` draws ``char`` at the probe size (a bitmap font: its strike): box, advance
    and pixels."""
    if face.strike:
        picture, box, advance = _colour(face, char)
        return box, advance, None if picture is None else picture.tobytes()
    font = _font(face, _PROBE_PX)
    advance = float(font.getlength(char))
    # getmask2's mask read as bytes: a third of the time Image and ImageDraw take (42 against
    # 128 µs), and a CJK character is probed in Pillow's font before Micro Hei draws it.
    mask, (left, top) = font.getmask2(char, mode="L", anchor="ls")
    width, height = mask.size
    if not width or not height:
        return (0, 0, 0, 0), advance, None
    return (left, top, left + width, top + height), advance, bytes(mask)


@functools.cache
def _notdef(face: Face) -> tuple[tuple[int, int, int, int], float, bytes | None]:
    return _probe(face, _UNMAPPED)


@functools.lru_cache(maxsize=32768)
def covers(face: Face, char: str) -> bool:
    """Whether ``face`` has a glyph for ``char``: it is not drawn as the font's .notdef.

    Told once per character at one size, ``_PROBE_PX`` (Pillow's font and Micro Hei tell the
    same of every character of the Basic Multilingual Plane at 12, 16, 24 and 46 pixels), so
    which font draws a character does not depend on the size it is drawn at.
    """
    return _usable(face) and _probe(face, char) != _notdef(face)


def _render(face: Face, size: int, char: str) -> Glyph:
    """``char`` from ``face`` (which has it) at ``size`` pixels."""
    if not face.strike:
        font = _font(face, size)
        mask, (left, top) = font.getmask2(char, mode="L", anchor="ls")
        advance = float(font.getlength(char))
        width, height = mask.size
        if not width or not height:
            return Glyph(None, (0, 0, 0, 0), advance, face)
        return Glyph(mask, (left, top, left + width, top + height), advance, face)
    # A colour glyph is scaled from its strike to the size asked for.
    picture, (left, top, right, bottom), advance = _colour(face, char)
    scale = size / face.strike
    if picture is None:
        return Glyph(None, (0, 0, 0, 0), advance * scale, face)
    x, y = round(left * scale), round(top * scale)
    width = max(1, round((right - left) * scale))
    height = max(1, round((bottom - top) * scale))
    small = picture.resize((width, height), Image.Resampling.LANCZOS)
    return Glyph(core(small), (x, y, x + width, y + height), advance * scale, face)


def _invisible(char: str) -> bool:
    """Format characters (Cf) and variation selectors (Mn) draw nothing."""
    code = ord(char)
    return (
        unicodedata.category(char) == "Cf" or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF
    )


@functools.lru_cache(maxsize=8192)
def glyph(fonts: tuple[Face, ...], size: int, char: str) -> Glyph:
    """``char`` at ``size`` pixels from the first of ``fonts`` that has it, else its code point
    (in Pillow's font); nothing for a format character. Each is drawn only once."""
    if _invisible(char):
        return Glyph(None, (0, 0, 0, 0), 0.0, None)
    # A control or a lone surrogate has no glyph by definition; some fonts draw one anyway.
    if unicodedata.category(char) not in ("Cc", "Cs"):
        for face in fonts:
            if covers(face, char):
                return _render(face, size, char)
    mask, baseline = line((BUILTIN,), size, f"U+{ord(char):04X}")
    box = (0, -baseline, mask.width, mask.height - baseline)
    return Glyph(core(mask), box, float(mask.width), None)


@functools.lru_cache(maxsize=64)
def _extent(size: int) -> tuple[int, int]:
    """(ascender, depth below the baseline of "Ag|(_") of Pillow's font: the least a line
    spans, so lines of Latin text are alike whatever their letters."""
    font = _font(BUILTIN, size)
    return font.getmetrics()[0], int(font.getbbox("Ag|(_", anchor="ls")[3])


@functools.lru_cache(maxsize=128)
def line(fonts: tuple[Face, ...], size: int, text: str) -> tuple[Image.Image, int]:
    """``text`` as one line of coverage 0..255, and the row of its baseline in it.

    As tall as Pillow's font from its ascender to the depth of "Ag|(_", or more where another
    font's glyph reaches further. Composed from cached glyphs (one FreeType call per glyph).
    """
    glyphs = [glyph(fonts, size, char) for char in text]
    ascent, depth = _extent(size)
    drawn = [g.box for g in glyphs if g.mask is not None]
    top = min([-ascent, *(box[1] for box in drawn)])
    bottom = max([depth, *(box[3] for box in drawn)])
    mask = Image.new("L", (max(1, round(sum(g.advance for g in glyphs))), bottom - top), 0)
    paste, x = ink_paster(mask), 0.0
    for g in glyphs:
        if g.mask is not None:  # the core's paste (privates.ink_paster): dozens per line
            left, upper, right, lower = g.box
            paste(255, (round(x) + left, upper - top, round(x) + right, lower - top), g.mask)
        x += g.advance
    return mask, -top


def main(argv: list[str] | None = None) -> int:
    """``python -m emulator.pictures.fonts --missing``: what ``make setup`` has to install."""
    parser = argparse.ArgumentParser(prog="python -m emulator.pictures.fonts", description=__doc__)
    parser.add_argument(
        "--missing", action="store_true", help="the Debian packages of missing setup fonts"
    )
    args = parser.parse_args(argv)
    if args.missing:
        print(" ".join(missing_packages()))
    else:
        for face in faces():
            print(face.path or "(Pillow's built-in font)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
