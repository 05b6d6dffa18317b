"""Result pictures: exact pixels and format, determinism, references, and the byte-bounded cache."""

from __future__ import annotations

import dataclasses
import io

import pytest
from PIL import Image

from emulator.rendering import CANVAS_SIDE, RenderCache, RenderSpec, canvas_size, render

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
    white = sum(count for count, rgb in colours if min(rgb) >= 240)  # type: ignore[type-var]
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


def test_broken_reference_still_gives_a_picture() -> None:
    img = _open(render(dataclasses.replace(SPEC, reference=b"not a picture")))
    assert img.size == (1184, 864)


def test_largest_8k_picture_renders_at_exact_size() -> None:
    data = render(dataclasses.replace(SPEC, width=12672, height=5376, model="NanoBananaPro-8K"))
    img = Image.open(io.BytesIO(data))  # the header is enough: decoding costs 68 MP
    assert (img.format, img.size) == ("PNG", (12672, 5376))


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
