"""The cassette: what a recording keeps, one JSON object per line, versioned.

A cassette is a directory: ``cassette.jsonl`` (one exchange per line, appended as they happen)
and ``blobs/`` (large bodies and result pictures, each named by its SHA-256). Every line carries
``"v": 1``; docs/recording.md describes every member.

Appending is safe under concurrent requests (one writer per directory: a lock, and each line
goes out in whole writes to a file opened for appending) and survives a crash mid-line: the
reader skips a torn line with a warning, and a writer that reopens the file starts on a fresh
line. Bodies are kept exactly: as JSON when writing it back compactly gives the same bytes,
else as text, else base64, or in a blob past `INLINE_MAX` bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .exchange import (
    FORMAT_VERSION,
    MAX_JSON_DEPTH,
    SHA256,
    Body,
    Exchange,
    NotFinite,
    compact,
    json_depth,
    parse_record,
    read_json,
)

CASSETTE_FILE = "cassette.jsonl"
BLOB_DIR = "blobs"
#: Bodies larger than this go to a blob (a multipart upload, a picture).
INLINE_MAX = 256 * 1024
#: The longest line read; a longer one is not a line this module wrote.
MAX_LINE_BYTES = 16 * 1024 * 1024


def encode_body(data: bytes, store_blob: Callable[[bytes], str]) -> Body | None:
    """How ``data`` is kept in a line (None: no body at all)."""
    if not data:
        return None
    if len(data) > INLINE_MAX:
        return {"blob": store_blob(data), "size": len(data)}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return {"text": text}
    if json_depth(parsed) <= MAX_JSON_DEPTH and compact(parsed) == text:
        return {"json": parsed}
    return {"text": text}  # as sent, or nested too deeply to write back as a line's JSON


@dataclass(slots=True)
class Cassette:
    """A cassette as read: its exchanges in recorded order, and what was skipped, and why."""

    directory: Path
    exchanges: list[Exchange]
    warnings: list[str]
    sessions: list[dict[str, Any]]

    @classmethod
    def load(cls, directory: str | Path) -> Cassette:
        """Read ``directory``; FileNotFoundError when it holds no cassette."""
        folder = Path(directory)
        path = folder / CASSETTE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} holds no cassette ({CASSETTE_FILE} is missing)")
        exchanges: list[Exchange] = []
        warnings: list[str] = []
        sessions: list[dict[str, Any]] = []
        for number, raw, last in _lines(path):
            if raw is None:
                warnings.append(
                    f"{path.name} line {number} is longer than the "
                    f"{MAX_LINE_BYTES // 2**20} MiB a line may have; skipped"
                )
                continue
            if not raw.strip():
                continue
            try:
                record = read_json(raw)
            except NotFinite as exc:
                warnings.append(f"{path.name} line {number} holds {exc}; skipped")
                continue
            except RecursionError:  # ``[`` x 200000: no line this module writes is that deep
                warnings.append(f"{path.name} line {number} is nested too deeply; skipped")
                continue
            except (ValueError, UnicodeDecodeError):
                torn = "cut short (a crash while writing?)" if last else "not valid JSON"
                warnings.append(f"{path.name} line {number} is {torn}; skipped")
                continue
            parsed = parse_record(record, number)
            if isinstance(parsed, str):
                warnings.append(f"{path.name} line {number}: {parsed}; skipped")
            elif parsed.kind == "session":
                sessions.append(record)
            else:
                exchanges.append(parsed)
        return cls(folder, exchanges, warnings, sessions)

    def blob(self, sha: str) -> bytes | None:
        """A blob's bytes, or None when it is missing or does not match its name."""
        if not SHA256.match(sha):
            return None
        try:
            data = (self.directory / BLOB_DIR / sha).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha else None

    def body(self, body: Body | None) -> bytes | None:
        """The exact bytes of a kept body (None: a blob that is missing or damaged)."""
        if body is None:
            return b""
        if "json" in body:
            return (compact(body["json"]) or "").encode("utf-8")
        if "text" in body:
            return str(body["text"]).encode("utf-8")
        if "b64" in body:
            try:
                return base64.b64decode(str(body["b64"]), validate=True)
            except (binascii.Error, ValueError):
                return None
        return self.blob(str(body.get("blob", "")))


def _lines(path: Path) -> Iterator[tuple[int, bytes | None, bool]]:
    """(number, bytes, whether it is the last line and has no newline) for each line; bytes
    None for a line longer than `MAX_LINE_BYTES` (read past, never held)."""
    with path.open("rb") as fh:
        number = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                # Skip the rest of an overlong line; the reader names it too long.
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(MAX_LINE_BYTES)
                yield number, None, False
                continue
            yield number, raw, not raw.endswith(b"\n")


class CassetteWriter:
    """Appends exchanges to one cassette directory. One writer per directory; thread-safe."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        (self.directory / BLOB_DIR).mkdir(parents=True, exist_ok=True)
        self.path = self.directory / CASSETTE_FILE
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # A line torn by a crash stays torn (the reader skips it), but nothing is appended to it.
        size = os.fstat(self._fd).st_size
        if size:
            with self.path.open("rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    self._write(b"\n")

    def store_blob(self, data: bytes) -> str:
        """Keep ``data`` in ``blobs/`` under its SHA-256 (once); returns the hash."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.directory / BLOB_DIR / sha
        if not target.exists():
            partial = target.with_name(f".{sha}.{threading.get_ident()}.part")
            partial.write_bytes(data)
            os.replace(partial, target)  # whole or absent, never half a picture
        return sha

    def append(self, record: dict[str, Any]) -> None:
        """Write one line (a JSON object)."""
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        self._write(text.encode("utf-8") + b"\n")

    def _write(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


__all__ = [
    "BLOB_DIR",
    "CASSETTE_FILE",
    "FORMAT_VERSION",
    "Cassette",
    "CassetteWriter",
    "Exchange",
    "encode_body",
    "parse_record",
]
