"""Every private API of Pillow the emulator uses, in one place: the core image behind an
``Image`` (``Image.im``) and its ``paste``.

Each is here because the public way changes the result or costs what drawing text should
not; each has a test in ``tests/test_privates.py`` that fails, naming Pillow and its version,
if an upgrade changes it.

- Glyph masks are kept as core images, which is what ``ImageFont.getmask2`` returns (``core``
  makes one of a resized colour glyph or a drawn code point).
- A line pastes dozens of glyphs: the core's ``paste`` skips ``Image.paste``'s argument checks
  and copy-on-write bookkeeping for each (``ink_paster``).
- The text block's coverage, mapped through a ramp of palette indices, is copied byte for byte
  into the "P" picture (``paste_indices``). ``picture.paste(coverage.point(ramp), xy)`` gives
  the same bytes, through two more copies of the block (its "L" to "P" conversion, and
  ``point``'s own image): measured at +0.1 ms on a 2.2 ms render of a 1024x1024 PNG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:  # the class exists in Pillow's type stubs only
    from PIL._imaging import ImagingCore as Core

#: ``ink_paster``'s answer: paste(ink, (left, upper, right, lower), mask).
InkPaster = Callable[[int, tuple[int, int, int, int], "Core"], None]


def core(image: Image.Image) -> Core:
    """The core image behind ``image`` (a glyph's mask)."""
    return image.im


def ink_paster(target: Image.Image) -> InkPaster:
    """``paste(ink, box, mask)`` on ``target`` (mode "L"): ``ink`` through a core ``mask``."""
    paste: InkPaster = target.im.paste
    return paste


def paste_indices(
    target: Image.Image, coverage: Image.Image, ramp: Sequence[int], xy: tuple[int, int]
) -> None:
    """``coverage`` ("L") mapped through ``ramp`` and copied as palette indices into
    ``target`` ("P") with its top left corner at ``xy``."""
    x, y = xy
    box = (x, y, x + coverage.width, y + coverage.height)
    target.im.paste(coverage.im.point(ramp, "L"), box)


__all__ = ["Core", "InkPaster", "core", "ink_paster", "paste_indices"]
