"""Restart without loss: an emulator on a SQLite store, stopped and started again on the file."""

from __future__ import annotations

import asyncio
import base64
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import Settings, create_app
from emulator.config import ConfigError
from emulator.usecases.emulator import Emulator

from .conftest import AUTH, KEY, Client, png_bytes

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}
GPT = {"model": "gpt-image-2", "prompt": "a sphere", "size": "1024x768", "quality": "low"}
DOOMED_RULE = {
    "id": "doomed",
    "match": {"endpoint": "submit", "prompt_contains": "doomed"},
    "effect": {"kind": "fail_task", "code": "content_policy_violation"},
    "times": 2,
}


@contextmanager
def running(settings: Settings) -> Iterator[Client]:
    """An emulator with its lifespan: the store is opened on entry and closed on exit."""
    with Client(create_app(settings), headers=AUTH) as client:
        yield client


def poll(client: Client, task_id: str) -> dict[str, Any]:
    """The task as its owner sees it (``Client.task`` is shadowed by TestClient's lifespan task
    while the client runs as a context manager)."""
    response = client.get(f"/v1/images/tasks/{task_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def emulator_of(client: Client) -> Emulator:
    emulator: Emulator = client.app.state.emulator  # type: ignore[attr-defined]
    return emulator


def snapshot(client: Client, task_ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """What a client sees of each task: status, progress, result and error."""
    seen = {}
    for task_id in task_ids:
        task = poll(client, task_id)
        seen[task_id] = (task["status"], task["progress"], task["result_url"], task["error"])
    return seen


def test_restart_on_the_manual_clock_loses_nothing_and_resumes_schedules(tmp_path: Path) -> None:
    settings = Settings(seed=1234, clock="manual", store=f"sqlite://{tmp_path}/emulator.db")
    reference = "data:image/png;base64," + base64.b64encode(png_bytes((0, 200, 0))).decode()
    with running(settings) as first:
        assert first.put(f"/_emulator/balances/{KEY}", json={"balance": 10_000}).status_code == 200
        assert first.post("/_emulator/faults", json=DOOMED_RULE).status_code in (200, 201)
        ids = [
            first.submit_ok(NANO),
            first.submit_ok(GPT),
            first.submit_ok(NANO | {"image": reference}),
            first.submit_ok(NANO | {"prompt": "doomed cat"}),  # first of the rule's two hits
        ]
        forced = first.submit_ok(GPT)
        first.post(f"/_emulator/tasks/{forced}/outcome", json={"status": "succeeded"})
        image_before = first.get(poll(first, forced)["result_url"]).content
        first.advance(3.0)  # the doomed one has failed (while queued), no other has ended
        before = snapshot(first, ids)
        balance_before = first.get("/_emulator/balances").json()["balances"]
        journal_before = len(first.get("/_emulator/requests").json()["requests"])
        assert [before[i][0] in ("queued", "processing") for i in ids] == [True] * 3 + [False]
        assert any(seen[0] == "processing" and seen[1] != "0%" for seen in before.values())

    with running(settings) as second:
        assert second.get("/_emulator/clock").json()["now"] == 3.0
        assert snapshot(second, ids) == before  # the same moment of the same schedules
        assert second.get("/_emulator/balances").json()["balances"] == balance_before
        journal = second.get("/_emulator/requests").json()["requests"]
        assert len(journal) > journal_before  # the old entries, then this run's
        assert second.get(poll(second, forced)["result_url"]).content == image_before
        emulator = emulator_of(second)
        assert second.portal is not None
        assert second.portal.call(emulator.store.get_blob, f"ref:{ids[2]}") is not None

        # The fault rule kept its hit count: one hit left, then it has expired.
        again = [second.submit_ok(NANO | {"prompt": "doomed cat"}) for _ in range(2)]
        fresh = second.submit_ok(NANO)
        second.advance(10_000)
        done = {i: poll(second, i) for i in [*ids, *again, fresh]}
        assert [done[i]["status"] for i in ids] == ["succeeded"] * 3 + ["failed"]
        assert [done[i]["status"] for i in again] == ["failed", "succeeded"]
        assert done[fresh]["status"] == "succeeded"
        assert not {*again, fresh} & {*ids, forced}  # no id drawn twice across the restart
        listed = {t["task"]["task_id"] for t in second.get("/_emulator/tasks").json()["tasks"]}
        assert listed == {*ids, forced, *again, fresh}
        usage = second.get("/_emulator/usage").json()
        assert {e["task_id"] for e in usage["entries"]} == listed
        assert usage["totals"]["held"] == 0


def test_restart_on_the_real_clock_keeps_submission_times_and_schedules(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/emulator.db"
    with running(Settings(seed=7, clock="real", store=store)) as first:
        slow = first.submit_ok(GPT | {"quality": "high"})
        view_before = first.get(f"/_emulator/tasks/{slow}").json()

    # Started again with time_scale 0: new tasks finish at once, the kept one keeps its
    # schedule (it was drawn once, at submission) and its submission time.
    with running(Settings(seed=7, clock="real", store=store, time_scale=0)) as second:
        view_after = second.get(f"/_emulator/tasks/{slow}").json()
        assert view_after["task"] == view_before["task"]
        assert view_after["task"]["schedule"]["queued_s"] > 0
        assert poll(second, slow)["status"] in ("queued", "processing")
        quick = second.submit_ok(GPT)
        assert quick != slow
        assert poll(second, quick)["status"] == "succeeded"


def test_a_store_kept_on_one_clock_refuses_a_start_on_another(tmp_path: Path) -> None:
    """A new user's walk-through: a store kept on the real clock, started again on the manual
    clock, answered a forced outcome 200 while every poll still said queued 0% (manual
    seconds are nowhere near the wall-clock times the task was made with). Such a start is
    refused now, naming ``clock``, both modes and what to do instead."""
    store = f"sqlite://{tmp_path}/emulator.db"
    with running(Settings(seed=7, clock="real", store=store)) as first:
        slow = first.submit_ok(GPT | {"quality": "high"})
    for other in ("manual", "per_poll"):
        with pytest.raises(ConfigError) as refused, running(Settings(clock=other, store=store)):
            pass
        assert refused.value.field == "clock"
        message = refused.value.message
        for needle in ("setting 'clock'", "kept with the 'real' clock", f"'{other}'", store):
            assert needle in message
        assert "state_dir" in message and "store_prefix" in message

    # Without the lifespan (in-process transports start lazily): every request that would act
    # on the tasks is refused with that message, nothing done.
    late = create_app(Settings(seed=7, clock="manual", store=store))
    unstarted = Client(late, headers=AUTH)
    answers = [
        unstarted.post(f"/_emulator/tasks/{slow}/outcome", json={"status": "succeeded"}),
        unstarted.get(f"/v1/images/tasks/{slow}"),
        unstarted.post("/v1/images/tasks", json=NANO),
    ]
    asyncio.run(late.state.emulator.store.close())
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "setting 'clock'" in answer.json()["message"]

    # On the clock it was kept with, it starts, the task as it was.
    with running(Settings(seed=7, clock="real", store=store)) as again:
        assert poll(again, slow)["status"] in ("queued", "processing")
        ended = again.post(f"/_emulator/tasks/{slow}/outcome", json={"status": "succeeded"})
        assert ended.status_code == 200, ended.text
        assert poll(again, slow)["status"] == "succeeded"


def test_a_file_from_before_the_clock_was_kept_takes_the_clock_of_its_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "emulator.db"
    with running(Settings(seed=7, clock="manual", store=f"sqlite://{path}")) as first:
        first.submit_ok(NANO)
    db = sqlite3.connect(path)
    try:  # the file as a release before this one left it: no such row
        with db:
            assert db.execute("DELETE FROM meta WHERE name = 'clock_mode'").rowcount == 1
    finally:
        db.close()
    with running(Settings(seed=7, clock="per_poll", store=f"sqlite://{path}")) as second:
        second.submit_ok(NANO)
    manual = Settings(seed=7, clock="manual", store=f"sqlite://{path}")
    with pytest.raises(ConfigError, match="kept with the 'per_poll' clock"), running(manual):
        pass


def test_serve_on_another_clock_than_its_state_dir_was_kept_with_exits_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running(Settings(seed=7, clock="real", state_dir=str(state))) as first:
        first.submit_ok(NANO)
    with socket.socket() as sock:  # a free port, should the refusal fail to come
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--state-dir", str(state), "--clock", "manual", "--port", str(port)]
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("image-task-emulator: cannot start: setting 'clock': ")
    for needle in ("'real' clock", "'manual' clock", "--clock real", "state_dir", str(state)):
        assert needle in done.stderr


def test_each_restart_draws_task_ids_from_a_fresh_stream(tmp_path: Path) -> None:
    settings = Settings(seed=99, clock="manual", store=f"sqlite://{tmp_path}/emulator.db")
    runs = []
    for _ in range(3):
        with running(settings) as client:
            runs.append({client.submit_ok(NANO) for _ in range(3)})
    assert len(runs[0] | runs[1] | runs[2]) == 9
    # Stream 0 of the seed is the plain sequence an in-memory emulator draws.
    with running(Settings(seed=99, clock="manual")) as memory:
        assert {memory.submit_ok(NANO) for _ in range(3)} == runs[0]


def test_state_dir_keeps_state_in_emulator_db_in_that_folder(tmp_path: Path) -> None:
    settings = Settings(seed=3, clock="manual", state_dir=str(tmp_path / "state"))
    with running(settings) as first:
        task_id = first.submit_ok(NANO)
        first.advance(1.5)
    assert (tmp_path / "state" / "emulator.db").is_file()
    with running(settings) as second:
        assert second.get("/_emulator/clock").json()["now"] == 1.5
        assert poll(second, task_id)["task_id"] == task_id


def test_reset_on_a_kept_store_forgets_the_file_contents_too(tmp_path: Path) -> None:
    settings = Settings(seed=3, clock="manual", store=f"sqlite://{tmp_path}/emulator.db")
    with running(settings) as first:
        task_id = first.submit_ok(NANO)
        first.advance(5)
        assert first.post("/_emulator/reset").status_code == 200
    with running(settings) as second:
        assert second.get(f"/v1/images/tasks/{task_id}").status_code == 404
        assert second.get("/_emulator/clock").json()["now"] == 0.0


def test_a_kept_store_over_a_lowered_max_tasks_is_trimmed_at_once(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/emulator.db"
    with running(Settings(seed=5, clock="manual", store=store)) as first:
        old = [first.submit_ok(NANO) for _ in range(5)]
        first.advance(10_000)
    again = Settings(seed=5, clock="manual", store=store, max_tasks=3, task_ttl_seconds=0)
    with running(again) as second:
        new = second.submit_ok(NANO)
        listed = [t["task"]["task_id"] for t in second.get("/_emulator/tasks").json()["tasks"]]
        # Full: the earliest finished go, a tenth of max_tasks (at least one) below the cap.
        assert len(listed) == 3 and listed[-1] == new
        assert set(listed[:-1]) <= set(old)


class ServeProcess:
    """``python -m emulator serve`` in a child process on a free loopback port."""

    def __init__(self, *args: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "emulator", "serve", "--port", str(port), *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:  # readiness, not timing: bounded by the deadline
            try:
                if httpx.get(f"{self.base_url}/_emulator/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("the emulator did not start")
            time.sleep(0.05)
        self.client = httpx.Client(base_url=self.base_url, headers=AUTH, timeout=10)

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (a clean stop) or SIGKILL (a crash), then wait for the process to go."""
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(20)


def test_a_killed_server_restarted_on_its_state_dir_loses_no_accepted_task(
    tmp_path: Path,
) -> None:
    args = ("--state-dir", str(tmp_path / "state"), "--clock", "manual", "--seed", "11")
    first = ServeProcess(*args)
    try:
        accepted = []
        for _ in range(5):
            response = first.client.post("/v1/images/tasks", json=NANO)
            assert response.status_code == 200
            accepted.append(response.json()["data"]["task_id"])
        first.client.post("/_emulator/clock/advance", json={"seconds": 1.0})
    finally:
        first.client.close()
        first.stop(kill=True)  # no shutdown hook runs: only what was committed is there

    second = ServeProcess(*args)
    try:
        assert second.client.get("/_emulator/clock").json()["now"] == 1.0
        second.client.post("/_emulator/clock/advance", json={"seconds": 10_000})
        for task_id in accepted:
            response = second.client.get(f"/v1/images/tasks/{task_id}")
            assert response.json()["data"]["status"] == "succeeded", response.text
    finally:
        second.client.close()
        second.stop()


#: Run in a child process: submit one task and die (os._exit, like SIGKILL: nothing is
#: cleaned up) at the first SQL statement after the task's row was written.
DIE_AFTER_THE_TASK_ROW = """
import os, sys
from starlette.testclient import TestClient
from emulator import Settings, create_app

app = create_app(Settings(seed=4, clock="manual", store=sys.argv[1]))
written = []

def trace(statement):
    if written:
        os._exit(9)
    if " ".join(statement.split()).upper().startswith("INSERT INTO TASKS"):
        written.append(statement)

app.state.emulator.store._db.set_trace_callback(trace)
with TestClient(app) as client:
    client.post("/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"},
                headers={"Authorization": "Bearer sk-crash"})
os._exit(0)
"""


def test_a_process_killed_mid_submission_leaves_no_task_without_its_charge(
    tmp_path: Path,
) -> None:
    store = f"sqlite://{tmp_path}/emulator.db"
    child = subprocess.run(
        [sys.executable, "-c", DIE_AFTER_THE_TASK_ROW, store], capture_output=True, timeout=60
    )
    assert child.returncode == 9, child.stderr.decode()
    with running(Settings(seed=4, clock="manual", store=store)) as again:
        tasks = {t["task"]["task_id"] for t in again.get("/_emulator/tasks").json()["tasks"]}
        charged = {e["task_id"] for e in again.get("/_emulator/usage").json()["entries"]}
        assert tasks == charged  # the submission was one transaction: all of it or nothing
