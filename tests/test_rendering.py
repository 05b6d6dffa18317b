"""Result pictures: exact pixels and format, determinism, references, and the byte-bounded cache."""

from __future__ import annotations

import dataclasses
import io

import pytest
from PIL import Image

from emulator.pictures import fonts, rendering
from emulator.pictures.cache import RenderCache
from emulator.pictures.encoding import encode_jpeg
from emulator.pictures.rendering import CANVAS_SIDE, canvas_size, render
from emulator.pictures.spec import RenderSpec

SPEC = RenderSpec(
    width=1184,
    height=864,
    fmt="png",
    model="NanoBanana",
    prompt="a lighthouse at dusk",
    task_id="task_" + "ab" * 16,
    index=0,
    count=2,
    seed=7,
)


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _reference() -> bytes:
    picture = Image.new("RGB", (200, 120), (0, 90, 200))
    picture.paste((250, 200, 0), (40, 30, 160, 90))  # a yellow block: rows that differ
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


REFERENCE = _reference()


@pytest.mark.parametrize(
    ("fmt", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")]
)
def test_picture_has_exact_size_and_requested_format(fmt: str, pil_format: str) -> None:
    img = _open(render(dataclasses.replace(SPEC, fmt=fmt)))  # type: ignore[arg-type]
    assert img.format == pil_format
    assert img.size == (1184, 864)


def test_same_spec_gives_identical_bytes() -> None:
    assert render(SPEC) == render(dataclasses.replace(SPEC))


@pytest.mark.parametrize(
    "change", [{"index": 1}, {"seed": 8}, {"task_id": "task_" + "cd" * 16}, {"prompt": "a boat"}]
)
def test_pictures_differ_by_index_seed_task_and_prompt(change: dict[str, object]) -> None:
    assert render(SPEC) != render(dataclasses.replace(SPEC, **change))  # type: ignore[arg-type]


def test_picture_carries_a_white_label() -> None:
    img = _open(render(SPEC)).convert("RGB")
    centre = img.crop((img.width // 4, img.height // 3, img.width * 3 // 4, img.height * 2 // 3))
    colours = centre.getcolors(maxcolors=1 << 16) or []
    white = sum(count for count, rgb in colours if isinstance(rgb, tuple) and min(rgb) >= 240)
    assert white > 100


def _mean(img: Image.Image) -> tuple[int, int, int]:
    pixel = img.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def test_reference_picture_shows_through() -> None:
    green = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 200, 0)).save(green, "PNG")
    r, g, b = _mean(_open(render(dataclasses.replace(SPEC, reference=green.getvalue()))))
    assert g > r + 60 and g > b + 60


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_reference_picture_shows_through_at_8k(fmt: str) -> None:
    red = io.BytesIO()
    Image.new("RGB", (256, 109), (220, 0, 0)).save(red, "PNG")
    spec = dataclasses.replace(SPEC, width=12672, height=5376, reference=red.getvalue())
    spec = dataclasses.replace(spec, fmt=fmt)  # type: ignore[arg-type]
    img = Image.open(io.BytesIO(render(spec)))
    img.draft("RGB", (12672 // 8, 5376 // 8))  # JPEG decodes at 1/8 scale: fast
    r, g, b = _mean(img.crop((0, 0, img.width // 8, img.height)))  # left edge: no label
    assert r > g + 60 and r > b + 60


def test_broken_reference_still_gives_a_picture() -> None:
    img = _open(render(dataclasses.replace(SPEC, reference=b"not a picture")))
    assert img.size == (1184, 864)


@pytest.mark.parametrize(("fmt", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG")])
@pytest.mark.parametrize("size", [(12672, 5376), (8192, 8192)])
def test_largest_8k_pictures_render_at_exact_size(
    fmt: str, pil_format: str, size: tuple[int, int]
) -> None:
    spec = dataclasses.replace(SPEC, width=size[0], height=size[1], model="NanoBananaPro-8K")
    data = render(dataclasses.replace(spec, fmt=fmt))  # type: ignore[arg-type]
    img = Image.open(io.BytesIO(data))  # the header is enough: decoding costs 68 MP
    assert (img.format, img.size) == (pil_format, size)


@pytest.mark.parametrize("reference", [None, REFERENCE], ids=["bands", "reference"])
@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_lossless_picture_is_the_nearest_neighbour_enlargement_of_the_canvas(
    fmt: str, reference: bytes | None
) -> None:
    """What is encoded is the drawn canvas, enlarged (the encoders: tests/test_encoding.py)."""
    spec = dataclasses.replace(SPEC, width=2000, height=1001, reference=reference)
    spec = dataclasses.replace(spec, fmt=fmt)  # type: ignore[arg-type]
    img = _open(render(spec))
    canvas = rendering.draw_canvas(spec)
    expected = canvas.resize(img.size, Image.Resampling.NEAREST).convert(img.mode)
    assert img.tobytes() == expected.tobytes()


def test_jpeg_is_the_encoded_enlargement_of_the_canvas() -> None:
    spec = dataclasses.replace(SPEC, fmt="jpeg", width=2000, height=1001, reference=REFERENCE)
    rgb = rendering.draw_canvas(spec).convert("RGB")
    assert render(spec) == encode_jpeg(rgb, 2000, 1001)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("size", [(1, 1), (2, 700), (700, 2)])
def test_tiny_and_thin_pictures_render(fmt: str, size: tuple[int, int]) -> None:
    spec = dataclasses.replace(SPEC, width=size[0], height=size[1])
    img = _open(render(dataclasses.replace(spec, fmt=fmt)))  # type: ignore[arg-type]
    assert img.size == size


def test_label_names_model_size_format_index_prompt_and_task() -> None:
    spec = dataclasses.replace(SPEC, index=1, count=4, prompt="a lighthouse " * 30)
    lines = rendering._lines(spec, fonts.faces(), 20, 400.0)
    text = " ".join(line for line, _ in lines)
    assert "NanoBanana" in text and "1184x864 png" in text and "image 2/4" in text
    assert "a lighthouse" in text and SPEC.task_id in text
    assert len(text) < 300  # a prompt excerpt, not the whole prompt


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_every_format_is_deterministic(fmt: str) -> None:
    spec = dataclasses.replace(SPEC, fmt=fmt, width=1600, height=900)  # type: ignore[arg-type]
    assert render(spec) == render(dataclasses.replace(spec))


def test_canvas_never_exceeds_its_side_and_keeps_the_ratio() -> None:
    assert canvas_size(512, 512) == (512, 512)
    w, h = canvas_size(12672, 5376)
    assert max(w, h) == CANVAS_SIDE
    assert abs(w / h - 12672 / 5376) < 0.01


@pytest.mark.parametrize("change", [{"width": 0}, {"height": -1}, {"fmt": "gif"}])
def test_impossible_specs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        render(dataclasses.replace(SPEC, **change))  # type: ignore[arg-type]


def test_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = RenderCache(max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # "a" is now the most recent
    cache.put("c", b"1234")
    assert cache.get("b") is None
    assert cache.get("a") == b"1234"
    assert (len(cache), cache.size_bytes) == (2, 8)


def test_cache_skips_items_bigger_than_its_budget() -> None:
    cache = RenderCache(max_bytes=3)
    cache.put("a", b"12")
    cache.put("big", b"1234")
    assert cache.get("big") is None
    assert cache.get("a") == b"12"


def test_cache_replacing_a_key_counts_bytes_once() -> None:
    cache = RenderCache(max_bytes=100)
    cache.put("a", b"12345")
    cache.put("a", b"12")
    assert (len(cache), cache.size_bytes) == (1, 2)
    cache.clear()
    assert (len(cache), cache.size_bytes) == (0, 0)


def test_cache_of_zero_bytes_keeps_nothing() -> None:
    cache = RenderCache(max_bytes=0)
    cache.put("a", b"1")
    assert cache.get("a") is None


#: Canvas palette index to 1 where the label draws text (its ramp above the box colour).
_IS_TEXT = bytes(int(i > rendering._BOX) for i in range(256))


def _text_pixels(spec: RenderSpec) -> bytes:
    """Where the picture shows text: 1 per canvas pixel drawn in the label's text ramp, inside
    the white frame (which uses the ramp's top entry too)."""
    canvas = rendering.draw_canvas(spec)
    edge = max(1, min(canvas.size) // 128)
    inner = canvas.crop((edge, edge, canvas.width - edge, canvas.height - edge))
    return inner.tobytes().translate(_IS_TEXT)


# Pairs of prompts of equal length in characters: a font that lacks their glyphs draws the same
# row of boxes for both, so only glyphs of the right font tell them apart.
SCRIPT_PAIRS = {
    "chinese": ("一只猫在屋顶上睡觉", "两条小狗在河边奔跑"),
    "japanese": ("さくらのはなびら", "ネコがねむるよる"),
    "korean": ("고양이가 잔다", "강아지가 뛴다"),
    "emoji": ("😀🐱🌸", "😢🐶🍣"),
}


@pytest.mark.parametrize("script", SCRIPT_PAIRS)
def test_two_prompts_in_one_script_show_different_text(script: str) -> None:
    first, second = (dataclasses.replace(SPEC, prompt=p) for p in SCRIPT_PAIRS[script])
    assert _text_pixels(first) != _text_pixels(second)


@pytest.mark.parametrize("script", SCRIPT_PAIRS)
def test_one_prompt_in_any_script_shows_the_same_pixels(script: str) -> None:
    spec = dataclasses.replace(SPEC, prompt=SCRIPT_PAIRS[script][0])
    again = dataclasses.replace(spec)
    assert _text_pixels(spec) == _text_pixels(again)
    assert render(spec) == render(again)


@pytest.mark.parametrize(
    "char",
    ["\u0378", "\U000f0000", "\U0010fffd", "\x07", "\ufdd0"],
    ids=["unassigned", "private-use-15", "private-use-16", "control", "noncharacter"],
)
def test_a_character_no_font_has_shows_as_its_code_point(char: str) -> None:
    """Never a box (a font's .notdef, "tofu"): the label reads as if the prompt spelt it out."""
    shown = dataclasses.replace(SPEC, prompt=f"a{char}b")
    spelt = dataclasses.replace(SPEC, prompt=f"aU+{ord(char):04X}b")
    assert _text_pixels(shown) == _text_pixels(spelt)


@pytest.mark.parametrize(
    ("prompt", "plain"),
    [("a\u200db", "ab"), ("😀\ufe0f", "😀"), ("a\u200eb\u2060c", "abc"), ("a\u00adb", "ab")],
    ids=["zero-width-joiner", "variation-selector", "direction-and-word-joiner", "soft-hyphen"],
)
def test_format_characters_draw_nothing(prompt: str, plain: str) -> None:
    shown = dataclasses.replace(SPEC, prompt=prompt)
    assert _text_pixels(shown) == _text_pixels(dataclasses.replace(SPEC, prompt=plain))


@pytest.mark.parametrize("script", SCRIPT_PAIRS)
@pytest.mark.parametrize("size", [(1184, 864), (672, 1536)])
def test_a_long_prompt_in_any_script_stays_inside_the_picture(
    script: str, size: tuple[int, int]
) -> None:
    spec = dataclasses.replace(SPEC, prompt=SCRIPT_PAIRS[script][0] * 20, width=size[0])
    canvas = rendering.draw_canvas(dataclasses.replace(spec, height=size[1]))
    edge = max(1, min(canvas.size) // 128)  # the frame; the columns just inside it show no label
    for x in (edge, canvas.width - edge - 1):
        column = canvas.crop((x, edge, x + 1, canvas.height - edge)).tobytes()
        assert max(column) < rendering._BOX


def _one_wide(char: str) -> float:
    """Every character one unit wide, except two for the CJK ideographs of these tests."""
    return 2.0 if "\u4e00" <= char <= "\u9fff" else 1.0


def test_wrap_breaks_latin_text_at_spaces() -> None:
    assert rendering._wrap("aa bb cc dd", _one_wide, 5, 4) == ["aa bb", "cc dd"]


def test_wrap_breaks_chinese_text_between_any_characters() -> None:
    assert rendering._wrap("一二三四五六七", _one_wide, 6, 4) == ["一二三", "四五六", "七"]


def test_wrap_cuts_a_word_wider_than_a_line_after_what_fits() -> None:
    assert rendering._wrap("ab cdefghij", _one_wide, 5, 4) == ["ab cd", "efghi", "j"]


def test_wrap_ends_text_beyond_its_lines_in_an_ellipsis() -> None:
    lines = rendering._wrap("aaaa bbbb cccc dddd", _one_wide, 4, 2)
    assert lines == ["aaaa", "bbb…"]
