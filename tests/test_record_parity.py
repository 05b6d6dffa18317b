"""``parity DIR --against URL``: the recorded requests sent to another service, the answers
diffed by structure; ids, times, URL hosts and the pace of tasks never count as differences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulator import Settings, create_app
from emulator.cli import main
from emulator.recording.snapshot import diff, normalize

from .conform_support import KEY
from .record_support import REAL_SETTINGS, SUBMISSIONS, Driver, real_service, recorder, serving
from .served import free_port


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("parity")
    with serving(real_service(deviate=False)) as upstream, recorder(upstream, directory) as proxy:
        driver = Driver(proxy)
        for body in SUBMISSIONS:
            driver.follow(body)
        driver.submit({"model": "gpt-image-2", "prompt": "no size"})
        driver.poll("task_unknown")
        driver.close()
    return directory


def _twin(**changes: Any) -> Any:
    """The emulator set up like the recorded service, with another seed and another pace."""
    settings = {**REAL_SETTINGS, "seed": 99, "clock": "per_poll", "per_poll_steps": 2, **changes}
    return create_app(Settings(**settings))


def _parity(
    capsys: pytest.CaptureFixture[str], directory: Path, url: str, *extra: str
) -> tuple[int, str]:
    code = main(["parity", str(directory), "--against", url, "--poll-interval", "0.01", *extra])
    return code, capsys.readouterr().out


def test_a_service_set_up_like_the_recording_has_no_differences(
    cassette: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(_twin()) as url:
        code, out = _parity(capsys, cassette, url)
    assert code == 0, out
    assert f"parity of {url} with the cassette {cassette}: no differences" in out


def test_the_seeded_difference_is_found_and_nothing_else(
    cassette: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with serving(_twin(always_list_results=True)) as url:
        code, out = _parity(capsys, cassette, url, "--report", str(tmp_path))
    assert code == 1
    found = [line for line in out.splitlines() if line.startswith("  - ")]
    assert found, out
    # Only result_urls: listed for every task on the target, only for n > 1 in the recording.
    assert all("metadata.result_urls: the recording has nothing, the target" in f for f in found)
    assert any(
        "final: metadata.result_urls: the recording has nothing, the target ['<url" in f
        for f in found
    )
    assert (tmp_path / "parity.txt").read_text() == out


def test_a_member_can_be_ignored(cassette: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(_twin(always_list_results=True)) as url:
        code, out = _parity(capsys, cassette, url, "--ignore", "metadata.result_urls")
    assert code == 0, out


def test_submissions_are_not_sent_off_this_machine_unless_allowed(
    cassette: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _parity(capsys, cassette, "https://relay.example")
    assert code == 2
    assert "is not on this machine and the cassette holds 4 submission(s)" in out
    assert "--allow-generation" in out


def test_an_unreachable_service_cannot_be_compared(
    cassette: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _parity(capsys, cassette, f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "parity: could not run:" in out


def test_a_request_whose_key_was_refused_goes_with_a_made_up_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # conform sends made-up keys on purpose (docs/recording.md records a conform run): sent
    # again with the caller's valid key they were accepted, each a difference that is none.
    with serving(real_service(deviate=False)) as upstream, recorder(upstream, tmp_path) as proxy:
        driver = Driver(proxy)
        driver.follow(SUBMISSIONS[0])
        stranger = Driver(proxy, key="sk-made-up")
        assert stranger.submit(SUBMISSIONS[0]).status_code == 401
        assert stranger.poll("task_unknown").status_code == 401
        driver.close()
        stranger.close()
    with serving(_twin(api_keys=(KEY,))) as url:
        code, out = _parity(capsys, tmp_path, url, "--api-key", KEY)
    assert code == 0, out
    assert "no differences" in out
    with serving(_twin()) as url:  # a service that takes any key: that is a difference
        code, out = _parity(capsys, tmp_path, url, "--api-key", KEY)
    assert code == 1
    assert "(POST /v1/images/tasks): status: the recording has 401, the target 200" in out


def test_ids_times_and_url_hosts_are_expected_to_differ() -> None:
    recorded = {
        "task_id": "task_aaa",
        "created_at": 1,
        "result_url": "https://cdn-a.example/p/1.png?sig=1",
        "parent_id": "task_bbb",
        "message": "it broke",
    }
    target = {
        "task_id": "task_zzz",
        "created_at": 2,
        "result_url": "http://127.0.0.1:9/_emulator/results/t/x/0.png",
        "parent_id": "task_yyy",
        "message": "it failed",
    }
    ids = frozenset({"task_aaa", "task_zzz"})
    assert diff(normalize(recorded, ids), normalize(target, ids)) == []
    target["result_url"] = "http://127.0.0.1:9/_emulator/results/t/x/0.webp"
    assert diff(normalize(recorded, ids), normalize(target, ids)) == [
        "result_url: the recording has '<url .png>', the target '<url .webp>'"
    ]
    target["created_at"] = "1970-01-01T00:00:02Z"
    assert diff(normalize(recorded, ids), normalize(target, ids))[0] == (
        "created_at: the recording has '<time (number)>', the target '<time (text)>'"
    )
