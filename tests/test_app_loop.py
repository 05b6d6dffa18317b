"""AppLoop: one loop per emulator, driven in place by sync callers, in a thread for the rest."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from emulator.testing.app_loop import CLOSED, AppLoop, Lease


@pytest.fixture
def loop() -> Iterator[AppLoop]:
    app_loop = AppLoop()
    yield app_loop
    app_loop.close()


async def where() -> tuple[asyncio.AbstractEventLoop, int]:
    return asyncio.get_running_loop(), threading.get_ident()


def test_a_sync_caller_drives_the_loop_in_its_own_thread(loop: AppLoop) -> None:
    first_loop, thread = loop.run(where())
    assert thread == threading.get_ident() and not loop.in_thread
    assert loop.run(where()) == (first_loop, thread)


def test_a_caller_on_another_loop_moves_it_to_a_thread_for_good(loop: AppLoop) -> None:
    home, _ = loop.run(where())

    async def from_a_test_loop() -> list[tuple[asyncio.AbstractEventLoop, int]]:
        # Both an awaited call and a blocking one from inside a running loop.
        return [await loop.arun(where()), loop.run(where())]

    seen = asyncio.run(from_a_test_loop())
    assert loop.in_thread
    seen.append(loop.run(where()))  # a sync caller again: handed to the thread too
    assert {seen_loop for seen_loop, _ in seen} == {home}
    assert {thread for _, thread in seen} != {threading.get_ident()}


def test_another_thread_moves_it_to_a_thread(loop: AppLoop) -> None:
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(loop.run(where())))
    worker.start()
    worker.join(10)
    assert loop.in_thread and len(results) == 1


def test_a_blocking_call_on_its_own_loop_is_an_error_not_a_deadlock(loop: AppLoop) -> None:
    async def nested() -> None:
        loop.run(where())

    with pytest.raises(RuntimeError, match="wait for itself"):
        loop.run(nested())


def test_close_cancels_what_still_runs_and_refuses_later_calls() -> None:
    loop = AppLoop()
    cancelled = threading.Event()

    async def held_forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def start_and_return() -> None:
        asyncio.get_running_loop().create_task(held_forever())
        await asyncio.sleep(0)

    asyncio.run(loop.arun(start_and_return()))  # in a thread now: the task keeps running
    loop.close()
    assert cancelled.is_set()
    with pytest.raises(RuntimeError, match="closed"):
        loop.run(where())


def test_a_call_cancelled_by_the_end_of_its_test_gets_the_closed_error() -> None:
    # A thread of the code under test waiting on an answer that a hang holds, when the test
    # ends: its caller catches Exception, which asyncio's CancelledError is not.
    loop = AppLoop()
    lease = Lease(loop)
    holding, outcome = threading.Event(), {}

    async def held_forever() -> None:
        holding.set()
        await asyncio.sleep(3600)

    def caller() -> None:
        try:
            lease.run(held_forever())
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=caller)
    thread.start()
    assert holding.wait(10)
    lease.end()  # the teardown's order: the lease ends, then what still runs is cancelled
    loop.close()
    thread.join(10)
    assert type(outcome["error"]) is RuntimeError and str(outcome["error"]) == CLOSED


def test_a_cancelled_call_of_a_running_test_is_still_a_cancellation() -> None:
    loop = AppLoop()
    lease = Lease(loop)

    async def cancelled_at_once() -> None:
        raise asyncio.CancelledError

    async def awaited() -> None:
        await lease.arun(cancelled_at_once())

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(awaited())
    loop.close()


def _interrupt() -> None:
    raise KeyboardInterrupt


def test_work_that_raises_or_leaves_callbacks_behaves_as_run_until_complete(
    loop: AppLoop,
) -> None:
    ran: list[str] = []

    async def leaves_a_callback() -> str:
        asyncio.get_running_loop().call_soon(ran.append, "left behind")
        return "done"

    assert loop.run(leaves_a_callback()) == "done"
    loop.run(where())  # the next trip runs what was left, if this one did not
    assert ran == ["left behind"]

    async def fails() -> None:
        raise LookupError("the work's own error")

    with pytest.raises(LookupError, match="the work's own error"):
        loop.run(fails())


def test_an_interrupted_trip_does_not_stop_a_later_one(loop: AppLoop) -> None:
    async def interrupted() -> str:
        asyncio.get_running_loop().call_soon(_interrupt)
        for _ in range(2):  # still running when the interrupt leaves the loop
            await asyncio.sleep(0)
        return "late"

    async def later() -> int:
        for _ in range(3):  # ends after the interrupted work does, on the same trip
            await asyncio.sleep(0)
        return 5

    with pytest.raises(KeyboardInterrupt):
        loop.run(interrupted())
    assert loop.run(later()) == 5


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="outside")


async def steer(value: str) -> str:
    VAR.set(value)  # a task's context is a copy: this never reaches the caller's
    return VAR.get()


def test_inline_work_runs_in_place_in_a_copy_of_the_context(loop: AppLoop) -> None:
    assert loop.run_inline(steer("inside")) == "inside"
    assert VAR.get() == "outside" and not loop.in_thread
    with pytest.raises(ValueError, match="refused"):
        loop.run_inline(refuse())


async def refuse() -> None:
    raise ValueError("refused")


def test_inline_work_that_suspends_is_an_error_and_is_closed(loop: AppLoop) -> None:
    reached = []

    async def suspends() -> None:
        try:
            await asyncio.sleep(0)
            reached.append("after")
        finally:
            reached.append("closed")

    with pytest.raises(RuntimeError, match="suspended"):
        loop.run_inline(suspends())
    assert reached == ["closed"]
    assert loop.run(where())[1] == threading.get_ident()  # the loop is still usable


def test_inline_work_goes_to_the_loop_where_run_would_hand_it_over(loop: AppLoop) -> None:
    home, _ = loop.run(where())

    async def from_a_test_loop() -> tuple[asyncio.AbstractEventLoop, int]:
        return loop.run_inline(where())

    assert asyncio.run(from_a_test_loop())[0] is home
    assert loop.in_thread
    assert loop.run_inline(where())[0] is home  # handed to the thread from now on
