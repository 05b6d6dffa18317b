"""Slots: a bound on picture work that waits without a thread, across event loops."""

from __future__ import annotations

import asyncio
import threading

from emulator.pictures.slots import Slots


def test_holders_never_exceed_the_count_across_event_loops() -> None:
    slots = Slots(2)
    holding = 0
    most = 0
    lock = threading.Lock()

    async def work() -> None:
        nonlocal holding, most
        async with slots.held():
            with lock:
                holding += 1
                most = max(most, holding)
            await asyncio.sleep(0.001)
            with lock:
                holding -= 1

    def loop_in_a_thread() -> None:
        async def many() -> None:
            await asyncio.gather(*(work() for _ in range(20)))

        asyncio.run(many())

    threads = [threading.Thread(target=loop_in_a_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most == 2
    assert slots.free == 2


def test_a_waiter_that_gives_up_leaves_no_slot_behind() -> None:
    slots = Slots(1)

    async def main() -> None:
        await slots.acquire()
        waiter = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        slots.release()
        assert slots.free == 1
        # Granted and cancelled in the same turn: the slot is handed on, not lost.
        await slots.acquire()
        late = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # schedules the grant to `late`...
        late.cancel()  # ...which gives up before it runs
        await asyncio.gather(late, return_exceptions=True)
        await asyncio.sleep(0)
        assert slots.free == 1

    asyncio.run(main())


def test_waiters_are_served_first_come_first_served() -> None:
    slots = Slots(1)
    order: list[int] = []

    async def main() -> None:
        await slots.acquire()

        async def waiter(i: int) -> None:
            async with slots.held():
                order.append(i)

        tasks = [asyncio.ensure_future(waiter(i)) for i in range(5)]
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == [0, 1, 2, 3, 4]
