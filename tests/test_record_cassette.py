"""The cassette format: exact bodies, versioned lines, safe appends, torn lines skipped."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from emulator.recording.cassette import (
    CASSETTE_FILE,
    INLINE_MAX,
    Cassette,
    CassetteWriter,
    Exchange,
    encode_body,
)


def _exchange(i: int) -> dict[str, object]:
    record = Exchange(
        line=0, kind="poll", t=float(i), method="GET", path=f"/v1/images/tasks/task_{i}"
    ).to_record()
    record["task_id"] = f"task_{i}"
    return record


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'{"a":1,"b":[true,null]}', "json"),
        (b'{"a": 1}', "text"),  # spaced JSON: kept as text, so its bytes come back
        (b'{"x":1e5}', "text"),  # a number Python would write as 100000.0
        ("plain ünïcode".encode(), "text"),
        (b"\x89PNG\r\n\x1a\n\x00\xff", "b64"),
        (b"x" * (INLINE_MAX + 1), "blob"),
    ],
)
def test_every_body_comes_back_byte_for_byte(tmp_path: Path, data: bytes, kind: str) -> None:
    writer = CassetteWriter(tmp_path)
    body = encode_body(data, writer.store_blob)
    assert body is not None and kind in body
    record = _exchange(1)
    record["response"] = {"headers": {}, "body": body}
    writer.append(record)
    writer.close()
    cassette = Cassette.load(tmp_path)
    assert cassette.body(cassette.exchanges[0].response_body) == data


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    writer = CassetteWriter(tmp_path)
    writer.append(_exchange(1))
    writer.close()
    with (tmp_path / CASSETTE_FILE).open("a") as fh:
        fh.write(json.dumps(_exchange(2))[:40])  # a crash in the middle of a line
    cassette = Cassette.load(tmp_path)
    assert [e.task_id for e in cassette.exchanges] == ["task_1"]
    assert cassette.warnings == [
        f"{CASSETTE_FILE} line 2 is cut short (a crash while writing?); skipped"
    ]


def test_a_writer_reopened_after_a_crash_starts_a_fresh_line(tmp_path: Path) -> None:
    (tmp_path / CASSETTE_FILE).write_text(json.dumps(_exchange(1)) + "\n" + '{"v":1,"kin')
    writer = CassetteWriter(tmp_path)
    writer.append(_exchange(3))
    writer.close()
    cassette = Cassette.load(tmp_path)
    assert [e.task_id for e in cassette.exchanges] == ["task_1", "task_3"]
    assert len(cassette.warnings) == 1 and "line 2 is not valid JSON" in cassette.warnings[0]


def test_concurrent_appends_give_whole_lines(tmp_path: Path) -> None:
    writer = CassetteWriter(tmp_path)

    def write(start: int) -> None:
        for i in range(start, start + 200):
            record = _exchange(i)
            record["response"] = {"headers": {}, "body": {"text": "y" * (i % 7000)}}
            writer.append(record)

    threads = [threading.Thread(target=write, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    cassette = Cassette.load(tmp_path)
    assert not cassette.warnings
    assert len(cassette.exchanges) == 800


def test_lines_of_another_version_or_shape_are_skipped_and_named(tmp_path: Path) -> None:
    rows = [
        {**_exchange(1), "v": 2},
        {**_exchange(2), "kind": "telepathy"},
        {**_exchange(3), "status": "200"},
        [1, 2],
        _exchange(4),
    ]
    (tmp_path / CASSETTE_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    cassette = Cassette.load(tmp_path)
    assert [e.task_id for e in cassette.exchanges] == ["task_4"]
    assert [w.split(": ", 1)[1] for w in cassette.warnings] == [
        "format version 2, not 1 (a newer recorder?); skipped",
        "unknown kind 'telepathy'; skipped",
        "'status' is not an integer; skipped",
        "not a JSON object; skipped",
    ]


def test_a_folder_without_a_cassette_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cassette\.jsonl is missing"):
        Cassette.load(tmp_path)


def test_a_blob_that_does_not_match_its_hash_is_not_served(tmp_path: Path) -> None:
    writer = CassetteWriter(tmp_path)
    sha = writer.store_blob(b"picture")
    writer.close()
    (tmp_path / "blobs" / sha).write_bytes(b"tampered")
    cassette = Cassette(tmp_path, [], [], [])
    assert cassette.blob(sha) is None
    assert cassette.blob("../../etc/passwd") is None
