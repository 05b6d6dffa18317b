"""Encoders: each decodes to exactly the nearest-neighbour enlargement of the canvas it is given
(JPEG: the very bytes of a direct encode), with well-formed streams and checksums."""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import zlib

import pytest
from PIL import Image

from emulator.pictures import encoding, rendering
from emulator.pictures.encoding import encode_jpeg, encode_png, encode_webp, interval_mcus, row_map

from .test_rendering import SPEC  # the same picture both files examine


def _reference() -> bytes:
    picture = Image.new("RGB", (200, 120), (0, 90, 200))
    picture.paste((250, 200, 0), (40, 30, 160, 90))  # a yellow block: rows that differ
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


REFERENCE = _reference()


def _canvas(size: tuple[int, int], reference: bytes | None = None) -> Image.Image:
    """A real placeholder canvas (bands or a reference, label, frame) for a picture of ``size``."""
    spec = dataclasses.replace(SPEC, width=size[0], height=size[1], reference=reference)
    return rendering.draw_canvas(spec)


def _padded(canvas: Image.Image) -> Image.Image:
    """``canvas`` with the first column of zeros that ``encode_png`` expects."""
    padded = Image.new("P", (canvas.width + 1, canvas.height), 0)
    padded.paste(canvas, (1, 0))
    padded.putpalette(canvas.getpalette() or [])
    return padded


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(("src", "dst"), [(1, 1), (1, 7), (3, 5), (19, 37), (5, 3), (255, 5376)])
def test_row_map_picks_the_rows_pillow_picks(src: int, dst: int) -> None:
    column = Image.frombytes("L", (1, src), bytes(range(src)))  # each row shows its number
    assert row_map(src, dst) == list(column.resize((1, dst), Image.Resampling.NEAREST).tobytes())


# Sizes whose scale factors are awkward (not integers, odd, a single pixel) and catalogue sizes.
SIZES = [(1, 1), (5, 3), (37, 19), (424, 632), (1024, 1024), (1184, 864), (1536, 672), (2000, 1001)]
SIZES += [(1920, 1080), (2016, 864), (3840, 2160), (2160, 3840), (3840, 1648)]


@pytest.mark.parametrize("reference", [None, REFERENCE], ids=["bands", "reference"])
@pytest.mark.parametrize("size", SIZES)
def test_png_is_the_nearest_neighbour_enlargement_of_the_canvas(
    size: tuple[int, int], reference: bytes | None
) -> None:
    canvas = _canvas(size, reference)
    img = _open(encode_png(_padded(canvas), *size))
    assert (img.mode, img.size) == ("P", size)
    assert img.tobytes() == canvas.resize(size, Image.Resampling.NEAREST).tobytes()
    assert img.getpalette() == canvas.getpalette()


def test_8k_png_decodes_to_the_exact_enlargement() -> None:
    canvas = _canvas((12672, 5376))
    img = _open(encode_png(_padded(canvas), 12672, 5376))
    assert img.mode == "P"
    assert img.tobytes() == canvas.resize(img.size, Image.Resampling.NEAREST).tobytes()


def _chunks(data: bytes) -> dict[bytes, bytes]:
    chunks: dict[bytes, bytes] = {}
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    return chunks


def test_png_stream_is_well_formed() -> None:
    """Every chunk CRC and the zlib stream's Adler-32 check, and the scanlines are complete."""
    data = encode_png(_padded(_canvas((3000, 1300))), 3000, 1300)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks = _chunks(data)
    assert list(chunks) == [b"IHDR", b"PLTE", b"IDAT", b"IEND"]
    scanlines = zlib.decompress(chunks[b"IDAT"])  # raises if the Adler-32 is wrong
    assert len(scanlines) == 1300 * 3001
    assert set(scanlines[::3001]) <= {0, 2}  # filter bytes: None or Up


@pytest.mark.parametrize("rows", [1, 2, 15, 16, 17, 1000])
@pytest.mark.parametrize("width", [1, 7, 12672])
def test_adler32_of_repeated_rows_in_closed_form(rows: int, width: int) -> None:
    head = b"some earlier scanline data"
    expected = zlib.adler32((b"\x02" + bytes(width)) * rows, zlib.adler32(head))
    assert encoding._repeat_adler(zlib.adler32(head), width, rows) == expected


def _direct_jpeg(rgb: Image.Image, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    blocks = interval_mcus(-(-size[0] // 16))
    rgb.resize(size, Image.Resampling.NEAREST).save(
        out, "JPEG", quality=encoding.JPEG_QUALITY, subsampling=2, restart_marker_blocks=blocks
    )
    return out.getvalue()


# Partial last MCU columns and rows (37, 424, 1001, 19...), intervals of 1 to 16 MCUs.
JPEG_SIZES = [(5, 3), (37, 19), (424, 632), (1184, 864), (2000, 1001), (3840, 2160), (700, 2)]


@pytest.mark.parametrize("reference", [None, REFERENCE], ids=["bands", "reference"])
@pytest.mark.parametrize("size", JPEG_SIZES)
def test_jpeg_equals_a_direct_encode_of_the_enlargement(
    size: tuple[int, int], reference: bytes | None
) -> None:
    """Spliced tiles give the very bytes libjpeg writes for the whole enlarged picture."""
    canvas = _canvas(size, reference)  # palette mode, as render() passes it
    assert encode_jpeg(canvas, *size) == _direct_jpeg(canvas.convert("RGB"), size)
    assert encode_jpeg(canvas.convert("RGB"), *size) == encode_jpeg(canvas, *size)


def _intervals(jpeg: bytes) -> list[bytes]:
    """The entropy-coded intervals of a baseline JPEG's scan (restart markers taken out)."""
    scan = jpeg.index(b"\xff\xda")
    scan += 2 + int.from_bytes(jpeg[scan + 2 : scan + 4], "big")
    return re.split(rb"\xff[\xd0-\xd7]", jpeg[scan:-2])


def test_8k_jpeg_holds_the_intervals_of_a_direct_encode() -> None:
    """At 8K a band through the label is encoded directly (a whole direct encode costs 68 MP):
    its intervals are those of the spliced picture at the same place."""
    rgb = _canvas((12672, 5376)).convert("RGB")
    data = encode_jpeg(rgb, 12672, 5376)
    assert _open(data).size == (12672, 5376)
    top, rows, per_row = 2560, 256, 12672 // 16 // interval_mcus(12672 // 16)
    band = rgb.resize((12672, 5376), Image.Resampling.NEAREST).crop((0, top, 12672, top + rows))
    start = top // 16 * per_row
    expected = _intervals(_direct_jpeg(band, band.size))
    assert _intervals(data)[start : start + len(expected)] == expected
    assert len(_intervals(data)) == 5376 // 16 * per_row


@pytest.mark.parametrize(("columns", "mcus"), [(1, 1), (3, 3), (37, 1), (125, 5), (792, 12)])
def test_intervals_divide_the_mcu_row(columns: int, mcus: int) -> None:
    assert interval_mcus(columns) == mcus
    assert interval_mcus(512) == encoding.JPEG_INTERVAL_MCUS


def test_jpeg_strips_do_not_change_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = _canvas((2000, 1001)).convert("RGB")
    whole = encode_jpeg(rgb, 2000, 1001)
    monkeypatch.setattr(encoding, "JPEG_STRIP_PIXELS", 3000)  # one tile per strip, or a few
    assert encode_jpeg(rgb, 2000, 1001) == whole


@pytest.mark.parametrize("size", [(5, 3), (1184, 864), (3840, 2160)])
def test_webp_is_the_lossless_enlargement_of_the_canvas(size: tuple[int, int]) -> None:
    rgb = _canvas(size).convert("RGB")
    img = _open(encode_webp(rgb, *size))
    assert img.format == "WEBP"
    assert img.convert("RGB").tobytes() == rgb.resize(size, Image.Resampling.NEAREST).tobytes()
