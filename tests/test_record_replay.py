"""``serve --replay DIR``: the recorded answers again, byte for byte, without the service."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from emulator.recording.cassette import Cassette
from emulator.recording.replay import create_replay_app

from .conform_support import SECOND_KEY
from .record_support import (
    KEY,
    SUBMISSIONS,
    Driver,
    real_service,
    recorder,
    replaying,
    serving,
    task_of,
)
from .served import serve_refused


def _keyed(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Driver]:
    """Three tasks followed to their end through the recorder, one refusal, one unknown task."""
    directory = tmp_path_factory.mktemp("cassette")
    with serving(real_service()) as upstream, recorder(upstream, directory) as proxy:
        driver = Driver(proxy)
        for body in SUBMISSIONS:
            driver.follow(body)
        driver.submit({"model": "gpt-image-2", "prompt": "no size"})
        driver.poll("task_unknown")
        driver.close()
    return directory, driver


def test_replay_answers_the_recording_byte_for_byte(recorded: tuple[Path, Driver]) -> None:
    directory, live = recorded
    cassette = Cassette.load(directory)
    with replaying(directory) as url:
        # Another key than the recording's: a cassette of one key replays for any (a CI
        # without the real key), the same bytes.
        again = Driver(url, key="sk-another-key")
        for exchange in cassette.exchanges:  # the same requests, in the same order
            if exchange.kind == "submit":
                assert exchange.request_body is not None
                again.submit(exchange.request_body["json"])
            else:
                again.poll(str(exchange.task_id))
        again.close()
    assert again.answers == live.answers
    assert len(live.answers) > 15


def _first_task_polls(directory: Path) -> tuple[str, list[bytes | None]]:
    """The cassette's first submitted task and the bodies of its recorded polls, in order."""
    cassette = Cassette.load(directory)
    task_id = next(str(e.task_id) for e in cassette.exchanges if e.kind == "submit")
    polls = [
        cassette.body(e.response_body)
        for e in cassette.exchanges
        if e.kind == "poll" and e.task_id == task_id
    ]
    return task_id, polls


def test_polls_come_in_recorded_order_then_the_last_answer(recorded: tuple[Path, Driver]) -> None:
    directory, _ = recorded
    task_id, expected = _first_task_polls(directory)
    with replaying(directory) as url:
        driver = Driver(url)
        got = [driver.poll(str(task_id)).content for _ in range(len(expected) + 3)]
        driver.close()
    assert got == [*expected, expected[-1], expected[-1], expected[-1]]
    statuses = [task_of(httpx.Response(200, content=b).json())["status"] for b in got]
    assert statuses[0] != statuses[-1] == "succeeded"


def test_a_submission_is_found_by_its_body_whatever_its_member_order(
    recorded: tuple[Path, Driver],
) -> None:
    directory, _ = recorded
    body = dict(reversed(list(SUBMISSIONS[1].items())))
    with replaying(directory) as url:
        answer = httpx.post(f"{url}/v1/images/tasks", json=body, headers=_keyed(KEY))
        again = httpx.post(f"{url}/v1/images/tasks", json=body, headers=_keyed(KEY))
    assert answer.status_code == 200 and task_of(answer.json())["status"] == "queued"
    assert again.content == answer.content  # the only recorded answer, again


@pytest.mark.parametrize(
    ("method", "path", "body", "said"),
    [
        (
            "GET",
            "/v1/images/tasks/task_never",
            None,
            "no poll of task 'task_never' with this key (key id",
        ),
        (
            "POST",
            "/v1/images/tasks",
            {"model": "NanoBanana2-0.5K", "prompt": "never sent"},
            "no recorded submission has this body (model 'NanoBanana2-0.5K', prompt 'never sent')",
        ),
        ("GET", "/_emulator/health", None, "GET /_emulator/health is not something a cassette"),
        ("GET", "/_recording/results/" + "0" * 64, None, "no result picture with hash"),
    ],
)
def test_anything_not_recorded_is_a_404_naming_what_is_missing(
    recorded: tuple[Path, Driver], method: str, path: str, body: object, said: str
) -> None:
    directory, _ = recorded
    with replaying(directory) as url:
        answer = httpx.request(
            method, url + path, json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_recorded"
    assert said in answer.json()["message"]


def test_a_path_ending_in_a_newline_is_no_routes(recorded: tuple[Path, Driver]) -> None:
    # Python's "$" matches before a final newline: these used to replay a recorded submission
    # and rewind the cassette.
    directory, _ = recorded
    with replaying(directory) as url:
        for path, body in (
            ("/v1/images/tasks%0A", SUBMISSIONS[0]),
            ("/_recording/rewind%0A", None),
        ):
            answer = httpx.post(url + path, json=body, headers={"Authorization": "Bearer x"})
            assert (answer.status_code, answer.json()["code"]) == (404, "not_found"), path


def test_a_poll_without_a_key_is_its_own_recording(recorded: tuple[Path, Driver]) -> None:
    directory, _ = recorded
    with replaying(directory) as url:
        answer = httpx.get(f"{url}/v1/images/tasks/task_unknown")
    assert answer.status_code == 404
    assert "without a key (it has polls with 1 key(s))" in answer.json()["message"]


def test_recorded_pictures_are_served_by_hash(tmp_path: Path) -> None:
    with (
        serving(real_service()) as upstream,
        recorder(upstream, tmp_path, record_results=True) as proxy,
    ):
        driver = Driver(proxy)
        task_id = driver.follow(SUBMISSIONS[1])  # two pictures
        live = task_of(driver.poll(task_id).json())
        originals = [httpx.get(u).content for u in live["metadata"]["result_urls"]]
        driver.close()
    with replaying(tmp_path) as url:
        driver = Driver(url)
        driver.submit(SUBMISSIONS[1])
        for _ in range(20):
            task = task_of(driver.poll(task_id).json())
            if task["status"] == "succeeded":
                break
        served = [httpx.get(u) for u in task["metadata"]["result_urls"]]
        driver.close()
    assert all(u.startswith(f"{url}/_recording/results/") for u in task["metadata"]["result_urls"])
    assert [s.content for s in served] == originals
    assert [s.headers["content-type"] for s in served] == ["image/webp", "image/webp"]
    assert [u.rsplit("/", 1)[1] for u in task["metadata"]["result_urls"]] == [
        hashlib.sha256(o).hexdigest() for o in originals
    ]


def _outcome(answer: httpx.Response) -> str:
    data = answer.json()
    return f"{answer.status_code} {task_of(data).get('status') or data.get('code')}"


def test_each_key_replays_its_own_polls(tmp_path: Path) -> None:
    # Recorded: the owner, another key (refused), then the owner three times. Replayed in
    # another order, each key must get what the service gave it, not the other's answers.
    # The second key has a task of its own: two keys served, so a third has nothing to replay.
    order = [KEY, SECOND_KEY, KEY, KEY, KEY]
    with serving(real_service(deviate=False)) as upstream, recorder(upstream, tmp_path) as proxy:
        submitted = httpx.post(f"{proxy}/v1/images/tasks", json=SUBMISSIONS[0], headers=_keyed(KEY))
        task_id = task_of(submitted.json())["task_id"]
        own = httpx.post(
            f"{proxy}/v1/images/tasks", json=SUBMISSIONS[1], headers=_keyed(SECOND_KEY)
        )
        assert own.status_code == 200
        live = [
            _outcome(httpx.get(f"{proxy}/v1/images/tasks/{task_id}", headers=_keyed(k)))
            for k in order
        ]
    assert live[1] == "404 task_not_found" and live[0].startswith("200")
    owner, other = [a for k, a in zip(order, live, strict=True) if k == KEY], live[1]
    with replaying(tmp_path) as url:
        poll = f"{url}/v1/images/tasks/{task_id}"
        replayed = [_outcome(httpx.get(poll, headers=_keyed(KEY))) for _ in owner]
        refused = _outcome(httpx.get(poll, headers=_keyed(SECOND_KEY)))
        stranger = httpx.get(poll, headers=_keyed("sk-never-recorded"))
        anonymous = httpx.get(poll)
        submit_stranger = httpx.post(
            f"{url}/v1/images/tasks", json=SUBMISSIONS[0], headers=_keyed("sk-never-recorded")
        )
    assert (replayed, refused) == (owner, other)
    assert (stranger.status_code, stranger.json()["code"]) == (404, "not_recorded")
    assert "with this key (key id " in stranger.json()["message"]
    assert "(it has polls with 2 other key(s))" in stranger.json()["message"]
    assert "without a key (it has polls with 2 key(s))" in anonymous.json()["message"]
    assert (submit_stranger.status_code, submit_stranger.json()["code"]) == (404, "not_recorded")


def test_a_key_never_recorded_replays_as_the_one_key_the_service_served(tmp_path: Path) -> None:
    # conform's 401 check polls with a made-up key: with it counted, the cassette had two key
    # ids and a CI without the real key got not_recorded for everything.
    made_up = "sk-conform-made-up-0123456789"
    with serving(real_service(deviate=False)) as upstream, recorder(upstream, tmp_path) as proxy:
        submitted = httpx.post(f"{proxy}/v1/images/tasks", json=SUBMISSIONS[0], headers=_keyed(KEY))
        task_id = task_of(submitted.json())["task_id"]
        poll = f"/v1/images/tasks/{task_id}"
        live = _outcome(httpx.get(proxy + poll, headers=_keyed(KEY)))
        refused = _outcome(httpx.get(proxy + poll, headers=_keyed(made_up)))
    assert refused.startswith("401") and live.startswith("200")
    placeholder = _keyed("sk-ci-placeholder")
    with replaying(tmp_path) as url:
        again = httpx.post(f"{url}/v1/images/tasks", json=SUBMISSIONS[0], headers=placeholder)
        polled = _outcome(httpx.get(url + poll, headers=placeholder))
        still_refused = _outcome(httpx.get(url + poll, headers=_keyed(made_up)))
    assert (again.status_code, again.content) == (200, submitted.content)
    assert (polled, still_refused) == (live, refused)  # the refused key keeps its refusal


def test_a_head_does_not_use_up_a_poll(recorded: tuple[Path, Driver]) -> None:
    directory, _ = recorded
    task_id, expected = _first_task_polls(directory)
    with replaying(directory) as url:
        driver = Driver(url)
        got = []
        for _ in expected:
            head = driver.http.head(f"/v1/images/tasks/{task_id}")
            assert head.status_code == 200 and head.content == b""
            got.append(driver.poll(str(task_id)).content)
        driver.close()
    assert got == expected


@pytest.mark.parametrize(
    ("text", "said", "warned"),
    [
        ("", "it holds no exchange", []),
        ('{"v":1,"kind":"session","t":1}\n', "it holds no exchange", []),
        (
            '{"v":2,"kind":"poll"}\nnot json\n',
            "all 2 line(s) were skipped",
            [
                "line 1: format version 2, not 1 (a newer recorder?); skipped",
                "line 2 is not valid JSON; skipped",
            ],
        ),
    ],
)
def test_a_cassette_with_nothing_to_replay_is_refused_with_its_warnings(
    tmp_path: Path, text: str, said: str, warned: list[str]
) -> None:
    # It used to start and answer not_recorded to everything, the warnings a count in health.
    (tmp_path / "cassette.jsonl").write_text(text)
    # On a free loopback port, hermetic (it ran with no --port: 8000, should it have started).
    stderr = serve_refused("--replay", str(tmp_path))
    assert f"cannot start: nothing to replay in {tmp_path}: {said}" in stderr
    told = [line for line in stderr.splitlines() if "warning:" in line]
    assert told == [f"image-task-emulator: warning: cassette.jsonl {w}" for w in warned]


def test_each_skipped_line_is_told_when_the_replay_starts(
    recorded: tuple[Path, Driver], tmp_path: Path
) -> None:
    directory, _ = recorded
    text = (directory / "cassette.jsonl").read_text()
    (tmp_path / "cassette.jsonl").write_text(text + '{"v":1,"kind":"poll","t":NaN}\n')
    told: list[str] = []
    app = create_replay_app(tmp_path, told.append)
    assert app.state.replayer.cassette.exchanges
    last = len(text.splitlines()) + 1
    assert told == [f"cassette.jsonl line {last} holds a number that is not finite (NaN); skipped"]
