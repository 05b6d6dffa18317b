"""Reference pictures made of nothing but container blocks are refused before Pillow walks
them (``emulator/pictures/containers.py``): each block costs a turn of a Python loop in
Pillow (GIF comments: a quadratic join), so a 19 MB PNG of empty chunks took 11 s of CPU to
open, twice per request, in one of the emulator's two decode slots."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from emulator.pictures.containers import MAX_BLOCKS, MAX_PNG_EXTRA_CHUNKS, excess_blocks

from .conftest import Client

NANO = {"model": "NanoBanana", "prompt": "a hostile reference"}


def _encoded(fmt: str, size: tuple[int, int] = (8, 8), **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, fmt, **options)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with(chunks: int, kind: bytes = b"zzZz") -> bytes:
    """A valid 8x8 PNG with ``chunks`` empty ancillary chunks before its pixels."""
    png = _encoded("PNG")
    return png[:33] + _chunk(kind) * chunks + png[33:]  # after the signature and IHDR


def gif_with(comments: int) -> bytes:
    """A valid 8x8 GIF with ``comments`` comment extensions of one sub-block before its frame."""
    gif = _encoded("GIF")
    head = 13 + (3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)
    return gif[:head] + b"!\xfe\x01a\x00" * comments + gif[head:]


def jpeg_with(markers: int) -> bytes:
    """A valid 8x8 JPEG with ``markers`` empty comment segments after SOI."""
    jpeg = _encoded("JPEG")
    return jpeg[:2] + b"\xff\xfe\x00\x02" * markers + jpeg[2:]


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


BOMBS = {
    "png": png_with(MAX_PNG_EXTRA_CHUNKS + 10),
    "gif": gif_with(MAX_BLOCKS // 2 + 10),  # each comment: the extension and its sub-block
    "jpeg": jpeg_with(MAX_BLOCKS + 10),
}


@pytest.mark.parametrize("fmt", sorted(BOMBS))
def test_a_picture_of_too_many_blocks_is_refused_naming_the_field(client: Client, fmt: str) -> None:
    response = client.submit(NANO | {"images": [_data_url(_encoded("PNG")), _data_url(BOMBS[fmt])]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"].startswith("images[1] holds more than"), body
    assert fmt.upper() in body["message"]


def test_an_uploaded_file_of_too_many_blocks_is_refused(client: Client) -> None:
    response = client.post(
        "/v1/images/tasks",
        data=NANO,
        files={"image": ("a.gif", BOMBS["gif"], "image/gif")},
    )
    assert response.status_code == 400, response.text
    assert "image holds more than 2048 GIF extension blocks" in response.json()["message"]


@pytest.mark.parametrize(
    "picture",
    [png_with(MAX_PNG_EXTRA_CHUNKS - 10), gif_with(MAX_BLOCKS // 2 - 10), jpeg_with(1000)],
    ids=["png", "gif", "jpeg"],
)
def test_blocks_under_the_bound_are_accepted(client: Client, picture: bytes) -> None:
    response = client.submit(NANO | {"image": _data_url(picture)})
    assert response.status_code == 200, response.text


def test_real_pictures_are_within_the_bounds() -> None:
    noise = Image.effect_noise((2000, 1500), 60).convert("RGB")
    pictures = []
    saves: list[tuple[str, dict[str, Any]]] = [
        ("PNG", {}),
        ("PNG", {"compress_level": 0}),  # 9 MB in 64 KiB chunks
        ("JPEG", {"progressive": True, "icc_profile": b"\0" * 300_000, "exif": b"x" * 60_000}),
        ("GIF", {"comment": b"c" * 5000, "loop": 0}),
        ("WEBP", {}),
    ]
    for fmt, options in saves:
        out = io.BytesIO()
        noise.save(out, fmt, **options)
        pictures.append(out.getvalue())
    frames = [Image.new("P", (64, 64), i) for i in range(50)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], loop=0)
    pictures.append(out.getvalue())
    assert [excess_blocks(p) for p in pictures] == [None] * len(pictures)


def test_a_19_mb_picture_of_empty_chunks_is_refused_before_pillow_opens_it(
    client: Client,
) -> None:
    """Opening it cost Pillow 11 s of CPU, twice. The refusal is the block count's, which runs
    before Pillow sees the bytes (what it costs is the benchmarks' to measure, not a test's)."""
    bomb = png_with(1_500_000)
    response = client.submit(NANO | {"image": _data_url(bomb)})
    assert response.status_code == 400, response.text
    assert "PNG chunks (one per 4 KiB" in response.json()["message"], response.text
