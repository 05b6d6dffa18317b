"""``parity`` never passes when it cannot tell: a cassette with nothing to send, answers it
cannot read, a target that drips, floods or stops answering with a task; and what it must not
hide (an error code, a time that changes type, a state the target never shows)."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import httpx
import pytest

from emulator.cli import main
from emulator.recording.parity import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, ParityOptions, run_parity
from emulator.recording.snapshot import diff, normalize
from emulator.recording.target import MAX_ANSWER_BYTES

from .parity_support import recorded, service, task, wrapped, write_cassette
from .record_support import serving

#: What a client records of a task followed to its end.
FOLLOWED = ("processing", "succeeded", "succeeded")


def _parity(
    capsys: pytest.CaptureFixture[str], directory: Path, url: str, *extra: str
) -> tuple[int, str]:
    code = main(["parity", str(directory), "--against", url, "--poll-interval", "0.01", *extra])
    return code, capsys.readouterr().out


def _differences(out: str) -> list[str]:
    return [line[4:] for line in out.splitlines() if line.startswith("  - ")]


def test_the_stand_in_matches_its_own_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The baseline of every test below: without a drift, no difference and 4 answers compared.
    write_cassette(tmp_path, recorded(*FOLLOWED))
    with serving(service()) as url:
        code, out = _parity(capsys, tmp_path, url)
    assert code == EXIT_OK, out
    assert "no differences" in out and "4 answer(s) compared" in out, out


# -- nothing compared: could not tell -----------------------------------------------------------
def _raw_cassette(directory: Path, text: str) -> Path:
    directory.mkdir()
    (directory / "cassette.jsonl").write_text(text, "utf-8")
    return directory


LINE_V2 = json.dumps({**recorded()[0].to_record(), "v": 2})


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty", ""),
        ("only a session", '{"v":1,"kind":"session","t":1.0}\n'),
        ("garbage", 'this is not json\n{"v":1}\n[1,2]\n'),
        ("another format version", LINE_V2 + "\n"),
    ],
)
def test_a_cassette_with_nothing_to_send_cannot_tell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    directory = _raw_cassette(tmp_path / "c", text)
    with serving(service()) as url:
        code, out = _parity(capsys, directory, url)
    assert code == EXIT_ERROR, out
    assert "could not tell: the cassette holds no exchange of the task routes" in out
    assert "no differences" not in out


# -- ids by name only ---------------------------------------------------------------------------
def test_an_error_code_that_looks_like_an_id_is_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cassette(tmp_path, recorded(*FOLLOWED))
    with serving(service("code")) as url:
        code, out = _parity(capsys, tmp_path, url)
    assert code == EXIT_DIFFERENT, out
    assert _differences(out) == [
        "line 6 (GET /v1/images/tasks/task_nope): code: the recording has 'task_not_found', "
        "the target 'task_gone'"
    ]


def test_only_members_named_like_ids_are_replaced() -> None:
    ids = frozenset({"task_a", "task_z"})
    recorded = {"task_id": "task_a", "parent_id": "task_b", "ids": ["task_c"], "code": "task_x"}
    target = {"task_id": "task_z", "parent_id": "task_y", "ids": ["task_d"], "code": "task_x"}
    assert diff(normalize(recorded, ids), normalize(target, ids)) == []
    target["code"] = "task_gone"
    assert diff(normalize(recorded, ids), normalize(target, ids)) == [
        "code: the recording has 'task_x', the target 'task_gone'"
    ]


# -- a target whose polls do not answer the task ------------------------------------------------
def test_polls_answered_without_a_task_are_a_difference_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cassette(tmp_path, recorded(*FOLLOWED))
    with serving(service("poll500")) as url:
        code, out = _parity(capsys, tmp_path, url)
    assert code == EXIT_DIFFERENT, out
    found = _differences(out)
    assert (
        "line 3 (GET /v1/images/tasks/task_000001): status: the recording has 200, the "
        "target 500" in found
    )
    assert any(
        "a poll of its task on the target answered 500 (text/plain) 'oops', not the task" in line
        for line in found
    ), out


def test_a_task_the_recording_never_polled_is_said_not_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cassette(tmp_path, recorded(unknown=False))
    with serving(service("poll500")) as url:
        code, out = _parity(capsys, tmp_path, url)
    assert code == EXIT_OK, out
    assert "(1 request(s) sent, 1 answer(s) compared" in out
    assert "the recording never polled it; only its submission compared" in out


def test_a_fault_of_parity_itself_is_could_not_tell_not_a_difference(tmp_path: Path) -> None:
    class Broken(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            raise RuntimeError("a fault inside parity")

    write_cassette(tmp_path, recorded(*FOLLOWED))
    printed: list[str] = []
    options = ParityOptions(against="http://127.0.0.1:9")
    code = run_parity(tmp_path, options, printed.append, transport=Broken())
    assert code == EXIT_ERROR
    assert printed[-1].startswith("parity: could not tell: parity itself failed (RuntimeError")
    assert "not a difference" in printed[-1]


def test_a_cassette_the_loader_cannot_read_is_could_not_tell_not_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A cassette file whose every read fails (root reads through chmod 000; /proc/self/mem is
    # a regular file whose offset 0 is never mapped: EIO). Loading it raised before parity's
    # catch-all, and the process ended 1, a difference.
    directory = tmp_path / "c"
    directory.mkdir()
    (directory / "cassette.jsonl").symlink_to("/proc/self/mem")
    code, out = _parity(capsys, directory, "http://127.0.0.1:9")
    assert code == EXIT_ERROR, out
    assert out.startswith("parity: could not tell: parity itself failed (OSError"), out
    assert "after 0 request(s); this is a fault of parity, not a difference" in out


def test_an_against_url_that_cannot_be_parsed_is_refused_with_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # urlsplit raises on an unclosed IPv6 host: it crashed parity before its catch-all (exit 1).
    write_cassette(tmp_path, recorded(*FOLLOWED))
    code, out = _parity(capsys, tmp_path, "http://[::1")
    assert code == EXIT_ERROR, out
    assert out == "parity: --against must be an http(s) URL, got 'http://[::1'\n"


# -- what parity cannot see is said, or a difference --------------------------------------------
def test_a_state_the_target_never_shows_is_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cassette(tmp_path, recorded(*FOLLOWED))
    with serving(service("noprocessing")) as url:
        code, out = _parity(capsys, tmp_path, url)
    assert code == EXIT_DIFFERENT, out
    assert any(
        "the recording saw it 'processing'; the target never answered 'processing'" in line
        for line in _differences(out)
    ), out


def test_a_time_that_changes_type_is_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cassette(tmp_path, recorded(*FOLLOWED))
    with serving(service("time_str")) as url:
        code, out = _parity(capsys, tmp_path, url)
    assert code == EXIT_DIFFERENT, out
    found = _differences(out)
    assert found, out
    assert all(
        "created_at: the recording has '<time (number)>', the target '<time (text)>'" in line
        for line in found
    ), out


def test_a_task_never_seen_ending_is_said_not_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cassette(tmp_path, recorded("processing"))
    with serving(service()) as url:
        code, out = _parity(capsys, tmp_path, url)
    assert code == EXIT_OK, out
    assert "the recording never saw it end; its final answer not compared" in out


# -- bounds of one exchange ---------------------------------------------------------------------
def test_a_dripping_target_ends_at_the_request_deadline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cassette(tmp_path, recorded(*FOLLOWED))
    started = time.monotonic()
    with serving(service("drip")) as url:
        code, out = _parity(capsys, tmp_path, url, "--request-deadline", "1")
    elapsed = time.monotonic() - started
    assert code == EXIT_DIFFERENT, out
    assert (
        "line 2 (POST /v1/images/tasks): the target gave no answer (no complete answer within "
        "1 s (--request-deadline" in out
    )
    # A liveness bound, wide for a loaded machine: the drip itself never ends.
    assert elapsed < 60, f"took {elapsed:.1f} s"


def test_a_later_exchange_that_drips_ends_at_the_request_deadline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The submission answers at once; the polls after it drip (8 s each, then the task). On a
    # connection kept alive from the submission the deadline had no socket to shut: each poll
    # was waited out in full (and an endless drip forever) under "no complete answer within 1 s".
    write_cassette(tmp_path, recorded("processing", unknown=False))
    app = service("drip_polls")
    with serving(app) as url:
        code, out = _parity(capsys, tmp_path, url, "--request-deadline", "1")
        ended = list(app.state.drips_ended)
    assert code == EXIT_DIFFERENT, out
    # The re-poll at the end cut alike: a note, not a second difference for the task.
    assert _differences(out) == [
        "line 3 (GET /v1/images/tasks/task_000001): the target gave no answer (no complete "
        "answer within 1 s (--request-deadline: connect, head and body together))",
    ]
    assert "task task_000001… (submitted at line 2): the target gave no answer again" in out
    # Each drip was cut at the deadline: not one was waited out to its end.
    assert ended == [], f"{len(ended)} dripping answer(s) read to their end: {out}"


def test_a_poll_the_target_did_not_answer_still_counts_as_polled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The recording polled the task; the target's answers to those polls are too large. The
    # summary must not say the recording never polled it.
    write_cassette(tmp_path, recorded(*FOLLOWED, unknown=False))
    with serving(service("huge_polls")) as url:
        code, out = _parity(capsys, tmp_path, url)
    assert code == EXIT_DIFFERENT, out
    assert "never polled" not in out, out
    no_answer = (
        f"the target gave no answer (its answer (200) is over {MAX_ANSWER_BYTES} bytes: parity "
        f"reads at most {MAX_ANSWER_BYTES} bytes of one answer)"
    )
    # One difference for the task and that cause; the later polls answered alike are notes.
    assert _differences(out) == [f"line 3 (GET /v1/images/tasks/task_000001): {no_answer}"]
    assert out.count("the target gave no answer again, as to line 3") == 3, out


def test_a_target_that_stops_answering_is_one_difference_for_its_task(tmp_path: Path) -> None:
    # The submission is answered; then nothing is: each recorded poll and the re-poll at the
    # end find no answer for the one reason. One difference, the first; the rest are notes.
    class StopsAnswering(httpx.BaseTransport):
        def __init__(self) -> None:
            self.requests = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            self.requests += 1
            if request.method == "POST":
                return httpx.Response(200, json=wrapped(task("task_000001", "queued", "0%")))
            raise httpx.ConnectError("connection refused", request=request)

    write_cassette(tmp_path, recorded(*FOLLOWED, unknown=False))
    stops, printed = StopsAnswering(), list[str]()
    options = ParityOptions(against="http://127.0.0.1:9", poll_interval=0.01)
    code = run_parity(tmp_path, options, printed.append, transport=stops)
    out = printed[-1]
    assert code == EXIT_DIFFERENT, out
    assert stops.requests == 5, out  # the submission, three recorded polls, one re-poll
    assert _differences(out) == [
        "line 3 (GET /v1/images/tasks/task_000001): the target gave no answer (ConnectError: "
        "connection refused)"
    ]
    again = [line for line in out.splitlines() if "no answer again, as to line 3" in line]
    assert len(again) == 3, out  # lines 4 and 5, and the re-poll


def test_a_huge_answer_is_a_difference_read_only_up_to_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cassette(tmp_path, recorded(*FOLLOWED))
    with serving(service("huge")) as url:
        tracemalloc.start()
        try:
            code, out = _parity(capsys, tmp_path, url)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert code == EXIT_DIFFERENT, out
    assert (
        f"line 2 (POST /v1/images/tasks): the target gave no answer (its answer (200) is over "
        f"{MAX_ANSWER_BYTES} bytes: parity reads at most {MAX_ANSWER_BYTES} bytes of one answer)"
    ) in out
    # The answer is 32 MiB; what was held at once (the server's chunks included) is far less.
    assert peak < 8 * MAX_ANSWER_BYTES, f"peak {peak} bytes"
