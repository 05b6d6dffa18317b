"""The label's fonts: the ones `make setup` installs are found and draw Chinese, Japanese,
Korean and emoji; no glyph drawn is ever a font's .notdef box; the override variable.

These fail, not skip, on a machine without the setup fonts: run `make setup` (as root), or
install the Debian packages that `python -m emulator.pictures.fonts --missing` names.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from emulator.pictures import fonts

SETUP = {c.package: c.face for c in fonts.candidates() if c.setup}
CJK = "fonts-wqy-microhei"
EMOJI = "fonts-noto-color-emoji"


def test_the_fonts_make_setup_installs_are_on_this_machine() -> None:
    assert set(SETUP) == {CJK, EMOJI}
    missing = [package for package, face in SETUP.items() if not Path(face.path).is_file()]
    assert not missing, f"missing fonts: run `make setup` or apt-get install {' '.join(missing)}"
    assert all(face in fonts.faces() for face in SETUP.values())


def test_setup_names_no_missing_font_package() -> None:
    """What the Makefile's `fonts` target asks before it runs apt-get."""
    out = subprocess.run(
        [sys.executable, "-m", "emulator.pictures.fonts", "--missing"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == ""


@pytest.mark.parametrize(
    ("char", "package"),
    [("中", CJK), ("觉", CJK), ("あ", CJK), ("ネ", CJK), ("한", CJK), ("é", CJK), ("😀", EMOJI)],
    ids=["hanzi", "simplified", "hiragana", "katakana", "hangul", "accented-latin", "emoji"],
)
def test_each_script_is_drawn_by_a_setup_font(char: str, package: str) -> None:
    glyph = fonts.glyph(fonts.faces(), 40, char)
    assert glyph.face == SETUP[package]
    assert glyph.mask is not None and glyph.advance > 0


def test_latin_is_drawn_by_pillows_own_font() -> None:
    assert {fonts.glyph(fonts.faces(), 40, c).face for c in "Az09_"} == {fonts.BUILTIN}


def test_an_emoji_is_scaled_to_the_size_of_the_text() -> None:
    small, large = (fonts.glyph(fonts.faces(), px, "😀") for px in (20, 80))
    assert small.box[2] - small.box[0] < large.box[2] - large.box[0] <= 110
    assert abs(large.advance - 4 * small.advance) < 1


# Every 97th code point of the first four planes, and characters no font or only some have.
SAMPLE = [chr(c) for c in range(0x20, 0x40000, 97) if not 0xD800 <= c <= 0xDFFF]
SAMPLE += ["\x00", "\x07", "\x7f", "\u0378", "\ufdd0", "\ufffd", "\U000f0000", "\U0010fffd"]


def _boxes(chain: tuple[fonts.Face, ...], size: int) -> set[bytes]:
    """How each scalable font of ``chain`` draws a character it lacks (U+10FFFF) at ``size``."""
    boxes = set()
    for face in chain:
        if not face.strike:
            mask, _ = fonts._font(face, size).getmask2("\U0010ffff", mode="L", anchor="ls")
            boxes.add(bytes(mask))
    return boxes


@pytest.mark.parametrize("size", [11, 46])
def test_no_glyph_is_a_fonts_missing_glyph_box(size: int) -> None:
    """A font draws a character it lacks as its .notdef, here a box ("tofu"): whatever the
    character, what is drawn is never that, but a glyph, its code point or nothing."""
    chain = fonts.faces()
    boxes = _boxes(chain, size)
    assert len(boxes) >= 2 and b"" not in boxes  # Aileron's and Micro Hei's: real boxes
    for char in SAMPLE:
        glyph = fonts.glyph(chain, size, char)
        if glyph.mask is not None and glyph.face is not None and not glyph.face.strike:
            assert bytes(glyph.mask) not in boxes, f"U+{ord(char):04X} drawn as a box"
        if glyph.face is None and glyph.mask is not None:  # its code point, in Pillow's font
            spelt, _ = fonts.line((fonts.BUILTIN,), size, f"U+{ord(char):04X}")
            assert bytes(glyph.mask) == spelt.tobytes()
        if unicodedata.category(char) == "Cf":
            assert glyph.mask is None and glyph.advance == 0


def test_a_font_named_by_the_environment_is_tried_before_the_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mine = tmp_path / "mine.ttc"
    mine.symlink_to(SETUP[CJK].path)
    monkeypatch.setenv(fonts.FONTS_ENV, str(mine))
    chain = fonts.faces()
    assert chain[:2] == (fonts.BUILTIN, fonts.Face(str(mine)))
    assert fonts.glyph(chain, 40, "中").face == fonts.Face(str(mine))


@pytest.mark.parametrize("content", [None, b"not a font"], ids=["missing", "not-a-font"])
def test_a_named_file_that_is_no_font_is_left_out_and_said(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    content: bytes | None,
) -> None:
    named = tmp_path / "named.ttf"
    if content is not None:
        named.write_bytes(content)
    monkeypatch.setenv(fonts.FONTS_ENV, f"{named}{os.pathsep}{SETUP[CJK].path}")
    with caplog.at_level(logging.WARNING, logger="emulator.pictures.fonts"):
        chain = fonts.faces()
    assert fonts.Face(str(named)) not in chain
    assert chain[:2] == (fonts.BUILTIN, SETUP[CJK])
    assert str(named) in caplog.text and fonts.FONTS_ENV in caplog.text


def test_without_other_fonts_every_character_is_latin_or_its_code_point() -> None:
    """A machine without the setup fonts still draws no box: CJK shows as code points."""
    chain = (fonts.BUILTIN,)
    glyph = fonts.glyph(chain, 40, "中")
    spelt, _ = fonts.line(chain, 40, "U+4E2D")
    assert glyph.face is None and glyph.mask is not None
    assert bytes(glyph.mask) == spelt.tobytes()
