"""The block structure of a reference picture, counted before Pillow reads it.

Pillow walks a picture's container in Python: every PNG chunk, every JPEG marker (and every
fill or stray byte) before the first scan, every GIF extension block and sub-block (and
stray byte) before the first frame, is a turn of a Python loop, and a GIF's comment blocks
are joined by repeated ``bytes +=`` (quadratic). A file made of nothing but such blocks is
cheap to send and dear to open: 19 MB of empty PNG chunks took 11 s of CPU to open, a 4 MB
GIF comment in 255-byte blocks 1.9 s (a 20 MB one about 50 s), and a picture is opened
twice (its size first, then its pixels), in one of the two decode slots. Real pictures have
a few dozen blocks besides their pixel data, so the count is bounded here, with loops that
stop at the bound, before Pillow sees the bytes.
"""

from __future__ import annotations

#: Blocks Pillow may walk before a JPEG's first scan or a GIF's first frame.
MAX_BLOCKS = 2048
#: PNG chunks allowed beyond one per 4 KiB of file (pixel data comes in chunks: libpng
#: writes 8 KiB ones, Pillow 64 KiB).
MAX_PNG_EXTRA_CHUNKS = 2048
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def excess_blocks(data: bytes) -> str | None:
    """What makes ``data`` too costly to open (its format's blocks, over the bound), or None
    (also for what is not PNG, JPEG or GIF: Pillow says what is wrong with it)."""
    if data.startswith(_PNG_SIGNATURE):
        limit = MAX_PNG_EXTRA_CHUNKS + len(data) // 4096
        if _png_chunks(data, limit) > limit:
            return f"more than {limit} PNG chunks (one per 4 KiB, plus {MAX_PNG_EXTRA_CHUNKS})"
    elif data.startswith(b"\xff\xd8"):
        if _jpeg_steps(data, MAX_BLOCKS) > MAX_BLOCKS:
            return f"more than {MAX_BLOCKS} JPEG markers or fill bytes before its first scan"
    elif data.startswith((b"GIF87a", b"GIF89a")) and _gif_steps(data, MAX_BLOCKS) > MAX_BLOCKS:
        return f"more than {MAX_BLOCKS} GIF extension blocks or stray bytes before its first frame"
    return None


def _png_chunks(data: bytes, limit: int) -> int:
    """Chunks up to IEND (where Pillow stops), counted up to ``limit`` + 1."""
    pos, count, size = len(_PNG_SIGNATURE), 0, len(data)
    while pos + 8 <= size and count <= limit:
        count += 1
        if data[pos + 4 : pos + 8] == b"IEND":
            break
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")  # length, type, data, CRC
    return count


def _jpeg_steps(data: bytes, limit: int) -> int:
    """Turns of Pillow's marker loop before the first scan (SOS), counted up to ``limit`` + 1:
    one per marker segment, one per fill ``0xFF`` and per stray byte between markers."""
    pos, steps, size = 2, 0, len(data)
    while pos + 1 < size and steps <= limit:
        if data[pos] != 0xFF:
            found = data.find(b"\xff", pos)  # Pillow reads stray bytes one at a time
            end = size if found == -1 else found
            steps += end - pos
            pos = end
            continue
        steps += 1
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: libjpeg (C) reads the rest
            break
        if marker in (0x00, 0x01, 0xFF) or 0xD0 <= marker <= 0xD9:
            pos += 1 if marker == 0xFF else 2  # fill byte, or a marker without a length
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return steps


def _gif_steps(data: bytes, limit: int) -> int:
    """Extension blocks and their sub-blocks (and stray bytes) before the first frame's image
    descriptor, counted up to ``limit`` + 1; the frame's own data is decoded in C."""
    size = len(data)
    if size < 13:
        return 0
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global palette
    steps = 0
    while pos < size and steps <= limit:
        byte = data[pos]
        if byte in (0x2C, 0x3B):  # the first image descriptor, or the trailer
            break
        steps += 1
        if byte != 0x21:  # Pillow skips a stray byte, one a turn
            pos += 1
            continue
        pos += 2  # introducer and label, then sub-blocks up to an empty one
        while pos < size and steps <= limit:
            length = data[pos]
            pos += 1 + length
            if length == 0:
                break
            steps += 1
    return steps


__all__ = ["MAX_BLOCKS", "MAX_PNG_EXTRA_CHUNKS", "excess_blocks"]
