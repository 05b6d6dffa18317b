"""The cassette format: exact bodies, versioned lines, safe appends, torn lines skipped."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from emulator.recording.cassette import (
    CASSETTE_FILE,
    INLINE_MAX,
    MAX_LINE_BYTES,
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
        "'status' '200' is not an HTTP status (an integer from 100 to 599); skipped",
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


def _edited(**changes: object) -> dict[str, object]:
    record = _exchange(9)
    record.update(status=200, response={"headers": {"content-type": "application/json"}})
    for name, value in changes.items():
        if name in ("headers", "body"):
            response = record["response"]
            assert isinstance(response, dict)
            if name == "headers":
                response["headers"] = {**response["headers"], **value}  # type: ignore[dict-item]
            else:
                response["body"] = value
        else:
            record[name] = value
    return record


@pytest.mark.parametrize(
    ("record", "said"),
    [
        (_edited(status=0), "'status' 0 is not an HTTP status (an integer from 100 to 599)"),
        (_edited(status=99999), "'status' 99999 is not an HTTP status"),
        (_edited(status=True), "'status' True is not an HTTP status"),
        (
            _edited(headers={"x-ratelimit-a": "1\r\nset-cookie: evil=1"}),
            "response header 'x-ratelimit-a' has a control character (CR, LF...) in its value",
        ),
        (_edited(headers={"bad name": "1"}), "response header 'bad name' is not an HTTP header"),
        (
            _edited(headers={"content-length": "5"}),
            "response header 'content-length' is the replay's own to set (the body's framing)",
        ),
        (_edited(body={"b64": "!!!"}), "the response body's 'b64' is not valid base64"),
        (_edited(body={"text": "\ud800"}), "the response body's 'text' is not valid Unicode"),
        (_edited(body={"blob": "../../etc/passwd"}), "the response body is not a known encoding"),
        (_edited(latency=-5), "'latency' is not a number of seconds from 0 to 86400"),
        (_edited(latency="fast"), "'latency' is not a number of seconds from 0 to 86400"),
        # Past a float's range: these raised OverflowError in every reader.
        (_edited(latency=10**400), "'latency' is not a number of seconds from 0 to 86400"),
        (_edited(t=10**400), "'t' is not a number of seconds from 0 to 1e+11"),
        (_edited(t=-1), "'t' is not a number of seconds from 0 to 1e+11"),
        # h11 refused to send these (an empty reply under serve --replay --http h11).
        (
            _edited(headers={"retry-after": " 1"}),
            "response header 'retry-after' has a space or tab at the start or end of its value",
        ),
        (_edited(headers={"retry-after": "1\t"}), "has a space or tab at the start or end"),
    ],
)
def test_a_hand_edited_value_that_could_not_be_served_skips_its_line(
    tmp_path: Path, record: dict[str, object], said: str
) -> None:
    # Each used to load, then drop the connection, cut the body or 500 when served.
    rows = [json.dumps(record), json.dumps(_exchange(4))]
    (tmp_path / CASSETTE_FILE).write_text("\n".join(rows) + "\n")
    cassette = Cassette.load(tmp_path)
    assert [e.task_id for e in cassette.exchanges] == ["task_4"]
    [warning] = cassette.warnings
    assert warning.startswith(f"{CASSETTE_FILE} line 1: ") and warning.endswith("; skipped")
    assert said in warning


@pytest.mark.parametrize(
    ("line", "number"),
    [
        ('"t":NaN', "NaN"),
        ('"t":Infinity', "Infinity"),
        ('"latency":-Infinity', "-Infinity"),
        ('"latency":1e999', "1e999"),
        ('"response":{"headers":{},"body":{"json":NaN}}', "NaN"),
    ],
)
def test_a_number_that_is_not_finite_skips_its_line(tmp_path: Path, line: str, number: str) -> None:
    # Python's json reads NaN and Infinity; a NaN time crashed calibrate (a division by zero),
    # a NaN body replayed as an empty 200.
    record = json.dumps(_exchange(1))
    edited = record[:-1] + "," + line + "}"
    (tmp_path / CASSETTE_FILE).write_text(edited + "\n" + json.dumps(_exchange(2)) + "\n")
    cassette = Cassette.load(tmp_path)
    assert [e.task_id for e in cassette.exchanges] == ["task_2"]
    assert cassette.warnings == [
        f"{CASSETTE_FILE} line 1 holds a number that is not finite ({number}); skipped"
    ]


def test_a_line_nested_too_deeply_is_skipped(tmp_path: Path) -> None:
    # Python's json raised RecursionError, which no reader caught (a traceback).
    (tmp_path / CASSETTE_FILE).write_text("[" * 200_000 + "\n" + json.dumps(_exchange(2)) + "\n")
    cassette = Cassette.load(tmp_path)
    assert [e.task_id for e in cassette.exchanges] == ["task_2"]
    assert cassette.warnings == [f"{CASSETTE_FILE} line 1 is nested too deeply; skipped"]


def test_an_overlong_line_is_named_too_long(tmp_path: Path) -> None:
    with (tmp_path / CASSETTE_FILE).open("w") as fh:
        fh.write('{"v":1,"pad":"' + "x" * (MAX_LINE_BYTES + 10) + '"}\n')
        fh.write(json.dumps(_exchange(2)) + "\n")
    cassette = Cassette.load(tmp_path)
    assert [e.task_id for e in cassette.exchanges] == ["task_2"]
    assert cassette.warnings == [
        f"{CASSETTE_FILE} line 1 is longer than the 16 MiB a line may have; skipped"
    ]
