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
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
CASSETTE_FILE = "cassette.jsonl"
BLOB_DIR = "blobs"
#: Bodies larger than this go to a blob (a multipart upload, a picture).
INLINE_MAX = 256 * 1024
#: The longest line read; a longer one is not a line this module wrote.
MAX_LINE_BYTES = 16 * 1024 * 1024
KINDS = ("session", "submit", "poll", "result")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Body = dict[str, Any]


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
    except ValueError:
        return {"text": text}
    if _compact(parsed) == text:
        return {"json": parsed}
    return {"text": text}


def _compact(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return None


def _body_ok(body: Any) -> bool:
    if body is None:
        return True
    if not isinstance(body, dict):
        return False
    if "json" in body:
        return True
    if isinstance(body.get("text"), str):
        return True
    if isinstance(body.get("b64"), str):
        return True
    return isinstance(body.get("blob"), str) and _SHA256.match(body["blob"]) is not None


@dataclass(frozen=True, slots=True)
class Exchange:
    """One recorded request and its answer (``status`` None: no answer, see ``error``)."""

    line: int
    kind: str
    t: float
    method: str
    path: str
    query: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    key_id: str | None = None
    request_body: Body | None = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: Body | None = None
    latency: float = 0.0
    task_id: str | None = None
    error: str | None = None
    #: A result picture: its URL as the answer gave it (masked) and its place in the answer.
    url: str | None = None
    index: int | None = None
    #: With ``status`` None: the status the upstream did send before its answer became
    #: unusable (too large, too slow), so the cassette keeps that it answered (a task created?).
    upstream_status: int | None = None
    #: What the recorder could not keep as it came (a header that is not UTF-8 text...).
    notes: tuple[str, ...] = ()

    @property
    def keyed(self) -> bool:
        """Whether the request carried an ``Authorization`` header."""
        return "authorization" in self.request_headers

    @property
    def caller(self) -> str | None:
        """Who sent the request (`masking.caller`): None without a key, else its key id."""
        if not self.keyed:
            return None
        return self.key_id or ""

    @property
    def content_type(self) -> str:
        return self.response_headers.get("content-type", "")

    @property
    def request_content_type(self) -> str:
        return self.request_headers.get("content-type", "")

    def to_record(self) -> dict[str, Any]:
        """The line's JSON object."""
        record: dict[str, Any] = {"v": FORMAT_VERSION, "kind": self.kind, "t": self.t}
        record.update(method=self.method, path=self.path)
        if self.query:
            record["query"] = self.query
        if self.url is not None:
            record["url"] = self.url
            record["index"] = self.index
        request: dict[str, Any] = {"headers": self.request_headers}
        if self.key_id is not None:
            request["key_id"] = self.key_id
        if self.request_body is not None:
            request["body"] = self.request_body
        record["request"] = request
        record["status"] = self.status
        response: dict[str, Any] = {"headers": self.response_headers}
        if self.response_body is not None:
            response["body"] = self.response_body
        record["response"] = response
        record["latency"] = round(self.latency, 6)
        if self.task_id is not None:
            record["task_id"] = self.task_id
        if self.error is not None:
            record["error"] = self.error
        if self.upstream_status is not None:
            record["upstream_status"] = self.upstream_status
        if self.notes:
            record["notes"] = list(self.notes)
        return record


def _headers(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return None
    return {k.lower(): v for k, v in value.items()}


def _is_status(value: Any) -> bool:
    """Whether ``value`` is an HTTP status a server can send (not ``true``, not 0)."""
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def parse_record(record: Any, line: int) -> Exchange | str:
    """The exchange of one line, or why the line is not one (a warning)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("v") != FORMAT_VERSION:
        return f"format version {record.get('v')!r}, not {FORMAT_VERSION} (a newer recorder?)"
    kind = record.get("kind")
    if kind not in KINDS:
        return f"unknown kind {kind!r}"
    t = record.get("t")
    if not isinstance(t, int | float) or isinstance(t, bool):
        return "'t' is not a number"
    if kind == "session":
        return Exchange(line=line, kind="session", t=float(t), method="", path="")
    request: dict[str, Any] = record["request"] if isinstance(record.get("request"), dict) else {}
    response: dict[str, Any] = (
        record["response"] if isinstance(record.get("response"), dict) else {}
    )
    request_headers, response_headers = (
        _headers(request.get("headers", {})),
        _headers(response.get("headers", {})),
    )
    status, latency = record.get("status"), record.get("latency", 0.0)
    problems = [
        (not isinstance(record.get("method"), str), "'method' is not text"),
        (not isinstance(record.get("path"), str), "'path' is not text"),
        (request_headers is None, "request headers are not a table of texts"),
        (response_headers is None, "response headers are not a table of texts"),
        (status is not None and not isinstance(status, int), "'status' is not an integer"),
        (not isinstance(latency, int | float), "'latency' is not a number"),
        (not _body_ok(request.get("body")), "the request body is not a known encoding"),
        (not _body_ok(response.get("body")), "the response body is not a known encoding"),
    ]
    for bad, why in problems:
        if bad:
            return why
    index, notes = record.get("index"), record.get("notes")
    return Exchange(
        line=line,
        kind=str(kind),
        t=float(t),
        method=str(record["method"]).upper(),
        path=str(record["path"]),
        query=str(record.get("query", "")),
        request_headers=request_headers or {},
        key_id=request.get("key_id") if isinstance(request.get("key_id"), str) else None,
        request_body=request.get("body"),
        status=status,
        response_headers=response_headers or {},
        response_body=response.get("body"),
        latency=float(latency),
        task_id=record["task_id"] if isinstance(record.get("task_id"), str) else None,
        error=record["error"] if isinstance(record.get("error"), str) else None,
        url=record["url"] if isinstance(record.get("url"), str) else None,
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        notes=tuple(n for n in notes if isinstance(n, str)) if isinstance(notes, list) else (),
        upstream_status=record.get("upstream_status")
        if _is_status(record.get("upstream_status"))
        else None,
    )


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
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
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
        if not _SHA256.match(sha):
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
            return (_compact(body["json"]) or "").encode("utf-8")
        if "text" in body:
            return str(body["text"]).encode("utf-8")
        if "b64" in body:
            try:
                return base64.b64decode(str(body["b64"]), validate=True)
            except (binascii.Error, ValueError):
                return None
        return self.blob(str(body.get("blob", "")))


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(number, bytes, whether it is the last line and has no newline) for each line."""
    with path.open("rb") as fh:
        number = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                # Skip the rest of an overlong line; it is reported as not valid JSON.
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(MAX_LINE_BYTES)
                yield number, b"\x00", False
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
