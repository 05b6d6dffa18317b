"""Encode a nearest-neighbour enlargement of a small canvas as PNG, JPEG or WebP without
building the full picture.

Placeholder pictures are drawn small and enlarged, so most output rows repeat: runs of equal
rows in PNG, equal tiles in JPEG. The PNG stream is written here with the stdlib ``zlib`` and
each distinct row compressed once; the JPEG is spliced from distinct tiles (one restart interval
each) that libjpeg encodes once. PNG decodes to exactly ``canvas.resize(size, NEAREST)``, JPEG
is byte for byte a direct encode of it.
Technique and figures: ``docs/rendering.md``.
"""

from __future__ import annotations

import bisect
import functools
import io
import re
import struct
import zlib
from array import array

from PIL import Image

#: JPEG settings: 4:2:0 chroma (MCUs of 16x16 pixels); placeholders need no more quality.
JPEG_QUALITY = 80
#: Most MCUs per restart interval (a tile, encoded once however often it recurs): shorter
#: intervals find more equal tiles but cost Python time and two marker bytes each.
JPEG_INTERVAL_MCUS = 16
#: Pixels per strip of distinct tiles handed to libjpeg at once (2 MB as RGBX).
JPEG_STRIP_PIXELS = 1 << 19

_MCU = 16
# Canvas rows enlarged to full width at a time for the JPEG encoder (1.6 MB at 12672 pixels).
_ENLARGE_ROWS = 32
# Repeated PNG rows are spliced in units of this many rows (plus one shorter unit).
_REPEAT_UNIT = 16
_RST = re.compile(rb"\xff[\xd0-\xd7]")
# RST7 first: interval k (from 0) is preceded by RST((k - 1) % 8), and the first by nothing.
_MARKERS = [bytes((0xFF, 0xD0 + (k - 1) % 8)) for k in range(8)]
_NEAREST = Image.Resampling.NEAREST


def row_map(src: int, dst: int) -> list[int]:
    """Source row of each of ``dst`` rows when ``src`` rows are enlarged, exactly as Pillow's
    nearest-neighbour resize picks them (asked of Pillow itself on a one-pixel-wide image)."""
    if src == dst:
        return list(range(src))
    column = Image.frombytes("I", (1, src), array("i", range(src)).tobytes())
    rows = array("i")
    rows.frombytes(column.resize((1, dst), _NEAREST).tobytes())
    return rows.tolist()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))


def _repeat_adler(adler: int, width: int, rows: int) -> int:
    """Adler-32 continued over ``rows`` "Up" rows of zeros: filter byte 2, then ``width`` zeros.

    In closed form, so runs of repeated rows cost nothing to checksum: each row adds 2 to the
    running sum A and (width + 1) * A to B.
    """
    base = 65521
    a, b = adler & 0xFFFF, adler >> 16
    b = (b + (width + 1) * (rows * a + rows * (rows + 1))) % base
    return (b << 16) | ((a + 2 * rows) % base)


@functools.lru_cache(maxsize=512)
def _repeat_unit(width: int, rows: int) -> bytes:
    """``rows`` "Up" rows of zeros, deflated on their own and ended with a full flush."""
    comp = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return comp.compress((b"\x02" + bytes(width)) * rows) + comp.flush(zlib.Z_FULL_FLUSH)


def _repeat_segment(width: int, rows: int) -> bytes:
    # Whole units are concatenated: independent, byte-aligned segments need no compressor.
    whole, rest = divmod(rows, _REPEAT_UNIT)
    return _repeat_unit(width, _REPEAT_UNIT) * whole + (_repeat_unit(width, rest) if rest else b"")


def encode_png(padded: Image.Image, width: int, height: int) -> bytes:
    """A palette PNG of ``padded`` (mode "P", whose first column is zeros) without that column,
    enlarged to ``width``x``height``.

    The zero column is every scanline's filter byte, so the rows come from one ``tobytes``.
    Each run of equal output rows is written as its first row, unfiltered, and then "Up" rows
    of zeros; Pillow decodes the result to exactly ``canvas.resize((width, height), NEAREST)``.
    """
    cw, ch = padded.width - 1, padded.height
    raw = padded.tobytes()
    # Bytes, not memoryviews: equal bytes compare with memcmp, memoryviews item by item.
    rows = [raw[i * (cw + 1) : (i + 1) * (cw + 1)] for i in range(ch)]
    # Runs of equal rows: only the first of each is compressed; the rest are spliced in.
    firsts = [0, *(i for i in range(1, ch) if rows[i] != rows[i - 1])]
    ys = row_map(ch, height)  # output rows are sorted by the canvas row they show
    ends = [bisect.bisect_left(ys, i) for i in firsts[1:]] + [height]
    repeats = [end - start - 1 for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    if cw == width:
        data, index = memoryview(raw), firsts
    else:
        n = len(firsts)
        distinct = Image.frombytes("P", (cw + 1, n), b"".join(rows[i] for i in firsts))
        wide = Image.new("P", (width + 1, n), 0)
        # Cropped first: a resize box offset can round differently from a plain resize.
        wide.paste(distinct.crop((1, 0, cw + 1, n)).resize((width, n), _NEAREST), (1, 0))
        data, index = memoryview(wide.tobytes()), list(range(n))
    stride, comp = width + 1, zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    parts, adler, start = [b"\x78\x01"], 1, -1
    for k, (i, repeat) in enumerate(zip(index, repeats, strict=True)):
        start = i if start < 0 else start
        if repeat or k + 1 == len(index):
            # Rows without repeats are contiguous in the buffer, so they go in one call.
            chunk = data[start * stride : (i + 1) * stride]
            adler = _repeat_adler(zlib.adler32(chunk, adler), width, repeat)
            parts.append(comp.compress(chunk))
            if repeat:  # a full flush leaves no references back across the spliced rows
                parts += (comp.flush(zlib.Z_FULL_FLUSH), _repeat_segment(width, repeat))
            start = -1
    parts += (comp.flush(zlib.Z_FINISH), struct.pack(">I", adler))
    palette = bytes((padded.getpalette() or [])[:768]).ljust(768, b"\x00")
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
    idat = _chunk(b"IDAT", b"".join(parts))
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"PLTE", palette) + idat + _chunk(b"IEND", b"")


def _rows(img: Image.Image) -> list[bytes]:
    raw = img.tobytes()
    stride = len(raw) // img.height
    return [raw[r * stride : (r + 1) * stride] for r in range(img.height)]


def _jpeg_header(data: bytes, width: int, height: int) -> tuple[bytes, int]:
    """The header of ``data`` up to its scan, with the frame size set; where the scan starts."""
    pos = 2
    header = bytearray(data)
    while True:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            header[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
        pos += 2 + length
        if marker == 0xDA:
            return bytes(header[:pos]), pos


def interval_mcus(columns: int) -> int:
    """MCUs per restart interval for a picture ``columns`` MCUs wide: the largest divisor of
    ``columns`` up to ``JPEG_INTERVAL_MCUS``, so every MCU row is cut at the same columns."""
    return max(n for n in range(1, min(columns, JPEG_INTERVAL_MCUS) + 1) if columns % n == 0)


def encode_jpeg(canvas: Image.Image, width: int, height: int) -> bytes:
    """``canvas`` (any mode with colours, e.g. "P" or "RGB") enlarged to ``width``x``height`` as
    a baseline JPEG, encoding each distinct tile once; the bytes equal a direct encode of the
    RGB enlargement with the same settings.

    A restart marker every ``interval_mcus`` MCUs resets the DC predictors and byte-aligns the
    data, so each interval's bytes depend on its own pixels only: a tile (one interval, 16
    rows by up to 16 MCUs) beside the label is the same tile as in a background row, and most
    tiles inside the label are flat box colour or repeat. Distinct tiles are stacked into
    narrow strips for libjpeg, then spliced in picture order with renumbered markers.
    """
    # Equal canvas rows get one id (the first such row), compared in the canvas's own mode:
    # equal there means equal in RGB, and a palette row is a quarter of an RGBX row to hash.
    rows = _rows(canvas)
    ids: dict[bytes, int] = {}
    first = [ids.setdefault(row, i) for i, row in enumerate(rows)]
    palette = canvas.getpalette() if canvas.mode == "P" else None
    mapped = [first[y] for y in row_map(canvas.height, height)]
    used = sorted(set(mapped))
    n = interval_mcus(-(-width // _MCU))
    stride, step = 4 * width, 4 * _MCU * n
    # A piece is one output row across one tile: equal pieces (by content) share an id. Used
    # rows are converted and enlarged a few at a time, so the same small buffers serve every
    # chunk. RGBX throughout: libjpeg takes it as RGB, and a strip of it is wrapped by
    # frombuffer without a copy (fresh memory is costly on a loaded machine).
    piece_ids: dict[bytes, int] = {}
    pieces_of: dict[int, list[int]] = {}
    for at in range(0, len(used), _ENLARGE_ROWS):
        chunk = used[at : at + _ENLARGE_ROWS]
        part = Image.frombytes(
            canvas.mode, (canvas.width, len(chunk)), b"".join(rows[r] for r in chunk)
        )
        if palette is not None:
            part.putpalette(palette)
        wide = part.convert("RGBX")
        if canvas.width != width:
            wide = wide.resize((width, len(chunk)), _NEAREST)
        raw = wide.tobytes()
        for i, r in enumerate(chunk):
            line = raw[i * stride : (i + 1) * stride]
            pieces_of[r] = [
                piece_ids.setdefault(line[p : p + step], len(piece_ids))
                for p in range(0, stride, step)
            ]
    pieces = list(piece_ids)
    # A tile is its pieces top to bottom; a partial last MCU row keeps its true height, so
    # libjpeg pads it as in a direct encode (as it pads a partial last MCU column).
    tile_ids: dict[tuple[int, ...], int] = {}
    row_tiles: dict[tuple[int, ...], list[int]] = {}
    keys = [tuple(mapped[top : top + _MCU]) for top in range(0, height, _MCU)]
    for key in dict.fromkeys(keys):
        tiles = zip(*(pieces_of[r] for r in key), strict=True)
        row_tiles[key] = [tile_ids.setdefault(tile, len(tile_ids)) for tile in tiles]
    shapes: dict[tuple[int, int], list[tuple[int, ...]]] = {}
    for tile in tile_ids:
        shapes.setdefault((len(pieces[tile[0]]) // 4, len(tile)), []).append(tile)
    encoded: dict[tuple[int, ...], bytes] = {}
    header = b""
    for (tile_w, tile_h), group in shapes.items():
        # Full-height tiles are stacked (one interval per strip MCU row); the shorter tiles of
        # a partial last MCU row lie side by side (only full-width ones share a shape there).
        tall = tile_h == _MCU
        most = 65535 // (_MCU if tall else tile_w)  # JPEG's limit on a side
        per_strip = max(1, min(most, JPEG_STRIP_PIXELS // (tile_w * tile_h)))
        for at in range(0, len(group), per_strip):
            batch = group[at : at + per_strip]
            if tall:
                size = (tile_w, tile_h * len(batch))
                data = b"".join(pieces[p] for tile in batch for p in tile)
            else:
                size = (tile_w * len(batch), tile_h)
                data = b"".join(pieces[tile[y]] for y in range(tile_h) for tile in batch)
            out = io.BytesIO()
            strip = Image.frombuffer("RGBX", size, data, "raw", "RGBX", 0, 1)
            strip.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=2, restart_marker_blocks=n)
            jpeg = out.getvalue()
            header, scan = _jpeg_header(jpeg, width, height)
            # The scan without the end-of-image marker, cut at the restart markers.
            encoded.update(zip(batch, _RST.split(jpeg[scan:-2]), strict=True))
    by_id = [encoded[tile] for tile in tile_ids]
    body: list[bytes] = []
    for key in keys:
        for t in row_tiles[key]:
            body += (_MARKERS[len(body) // 2 % 8], by_id[t])
    body[0] = header  # in place of a marker before the first interval: one copy in all
    body.append(b"\xff\xd9")
    return b"".join(body)


def encode_webp(canvas: Image.Image, width: int, height: int) -> bytes:
    """``canvas`` (any mode with colours) enlarged to ``width``x``height`` as a lossless RGB
    WebP, built whole.

    WebP is offered only up to ~3840 pixels (catalogue), so a full-size image is affordable.
    Lossless at the fastest setting: a few flat colours cost libwebp far less than lossy.
    """
    out = io.BytesIO()
    big = canvas.convert("RGB").resize((width, height), _NEAREST)
    big.save(out, "WEBP", lossless=True, quality=0, method=0)
    return out.getvalue()


__all__ = ["JPEG_QUALITY", "encode_jpeg", "encode_png", "encode_webp", "interval_mcus", "row_map"]
