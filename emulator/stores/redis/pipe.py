"""Script calls coalesced onto one connection: the commands that concurrent requests issue
while the previous batch is on its way go out together as one write, and their replies come
back in one read, matched to their callers in order (pipelining across requests).

Why: on a worker serving many requests at once, each script call used to cost a socket write,
a wake-up of the event loop and a read of its own; those, not Redis's work nor the client's
packing, were the largest part of what a poll on Redis costs more than one in memory (py-spy
on a served worker under wrk, docs/scaling.md). A batch pays them once.

The rules, each pinned by tests/test_redis_pipe.py or tests/test_redis_pipe_faults.py
(reconnecting after a failure by the restart tests of tests/test_redis_store.py and
tests/test_scaling.py):

- Each command is still one ``EVALSHA`` (one atomic script); a batch is only how they travel.
  A command is written once and never again; ``Scripts`` resends only after ``NOSCRIPT``.
- Replies are matched to commands by position. A caller that gives up (cancelled, or its
  deadline passed) leaves its slot: its reply is read and thrown away, so no caller ever gets
  another's reply. A command whose caller gave up before its batch was written is not sent:
  the connection is made ready (connected, handshake done) before a batch is built from the
  commands whose callers still wait and whose deadlines have not passed.
- Each caller waits at most ``timeout`` from the moment it queued its command (one timer per
  connection, for the oldest command still waited for, instead of one per call). A reply that
  is that late makes the connection suspect, whether its caller still waits or gave up (a dead,
  half-open connection answers nothing, ever): it takes no new command (a new one is opened for
  the queue) and is closed once no caller waits on it. Calls whose callers gave up are dropped
  from the queue when the timer runs, so a stuck connection holds no pile of them. The callers
  already written on it keep waiting for their replies, each until its own deadline and no
  earlier: a write answered 503 must never run afterwards, which its script's deadline
  guarantees only from that deadline on.
- An error reply (a script's error, ``LATE``, ``NOSCRIPT``) reaches only its own caller; a
  connection failure reaches the callers written on it (a write may have run: 503, never
  resent), and the connection reconnects for the next batch. Connecting is bounded by
  ``timeout``; a failure to connect reaches the callers waiting then (nothing was sent).
- A batch holds at most ``BATCH`` commands and ``BATCH_BYTES`` (a larger command goes alone);
  more wait for the next write.
- ``close`` answers every caller still waiting with a ``ConnectionError`` (a 503), also one
  whose command was queued an instant before, and closes the connection.

Only public APIs: redis-py's ``Connection`` (``pack_command``, ``send_packed_command``,
``read_response``, ``can_read`` / ``can_read_destructive``, ``connect``, ``disconnect``) and
asyncio's futures, tasks and timers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: What an idle connection is asked before reuse: "is there anything to read (or has Redis
#: closed it)". redis-py 8 named it ``can_read``; earlier versions (the pin allows 5 to 8) only
#: have ``can_read_destructive``, which 8 deprecates.
_CAN_READ = "can_read" if hasattr(AbstractConnection, "can_read") else "can_read_destructive"
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class Call:
    """One queued command: its packed bytes, its caller's future and deadline (loop time)."""

    __slots__ = ("chunks", "deadline", "future", "size")

    def __init__(self, chunks: list[bytes], future: asyncio.Future[Any], deadline: float) -> None:
        self.chunks, self.future, self.deadline = chunks, future, deadline
        self.size = sum(map(len, chunks))


def _closed() -> RedisConnectionError:
    return RedisConnectionError("the store's connection was closed")


def answer(call: Call, reply: Any) -> None:
    """``call``'s caller gets ``reply`` (an exception raised), unless it gave up already."""
    if not call.future.done():  # a caller that gave up left its slot: the reply is dropped
        if isinstance(reply, BaseException):
            call.future.set_exception(reply)
        else:
            call.future.set_result(reply)


class Pipe:
    """One connection and the commands queued on it (see the module's docstring).

    ``on_retired(calls)`` is told when the connection stops taking commands (a reply came too
    late), with the commands queued but not yet written, for another ``Pipe`` to take."""

    BATCH = 128
    BATCH_BYTES = 256 * 1024

    def __init__(
        self,
        conn: AbstractConnection,
        timeout: float,
        on_retired: Callable[[Pipe, list[Call]], None],
    ) -> None:
        self.conn, self._timeout, self._on_retired = conn, timeout, on_retired
        self._loop = asyncio.get_running_loop()
        self._queued: deque[Call] = deque()
        self._written: deque[Call] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._timer: asyncio.Handle | None = None
        #: When ``_timer`` runs: uvloop's ``call_at`` answers a plain Handle, without
        #: ``when()``, for a deadline passed or under a millisecond away (a handed-over call's).
        self._timer_at = 0.0
        self._pump: asyncio.Task[None] | None = None
        #: False once a reply came too late: the connection takes no new command.
        self.open = True

    @property
    def closed(self) -> bool:
        return self._pump is not None and self._pump.done()

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; its reply (or error) comes in the future."""
        return self.take(self.command(*args))

    def command(self, *args: Any, deadline: float = 0.0) -> Call:
        """One command packed for ``take``, due ``timeout`` from now unless ``deadline``."""
        deadline = deadline or self._loop.time() + self._timeout
        return Call(self.conn.pack_command(*args), self._loop.create_future(), deadline)

    def take(self, call: Call) -> asyncio.Future[Any]:
        """Queue ``call`` (made by ``command``, or handed over by a retired pipe)."""
        self._queued.append(call)
        if self._pump is None:
            self._pump = self._loop.create_task(self._run())
            # Also when it is cancelled before its first step (a close right after this call),
            # which skips _run's ``finally``: every caller is answered, the timer stopped.
            self._pump.add_done_callback(lambda _: self._end(_closed()))
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        timer = self._timer
        if timer is None or call.deadline < self._timer_at:  # (a call handed over is older)
            if timer is not None:
                timer.cancel()
            self._arm(call.deadline)
        return call.future

    async def _run(self) -> None:
        conn, queued, written = self.conn, self._queued, self._written
        connect: Callable[[], Awaitable[None]] = conn.connect  # (unannotated in redis-py)
        failure: BaseException = _closed()
        try:
            while self.open:
                if not queued:
                    self._wake = self._loop.create_future()
                    await self._wake
                    continue
                # The connection is made ready before the batch is built: connecting can
                # stall (AUTH, SELECT to a stalled Redis), and a caller may give up meanwhile.
                # An idle connection with something to read (Redis closed it, e.g. a restart)
                # is reconnected before it is used, as redis-py's pool does.
                if conn.is_connected:
                    try:
                        dirty = await getattr(conn, _CAN_READ)()
                    except _UNAVAILABLE:
                        dirty = True
                    if dirty:
                        await conn.disconnect()
                if not conn.is_connected:
                    try:
                        async with asyncio.timeout(self._timeout):
                            await connect()
                    except _UNAVAILABLE as exc:
                        # Nothing was sent; whoever waits now would only try it again.
                        while queued:
                            answer(queued.popleft(), exc)
                        await conn.disconnect(nowait=True)
                        continue
                batch: list[bytes] = []
                size = 0
                now = self._loop.time()
                while queued and len(written) < self.BATCH:
                    call = queued[0]
                    if batch and size + call.size > self.BATCH_BYTES:
                        break
                    queued.popleft()
                    if call.future.done():  # its caller gave up before it was written
                        continue
                    if call.deadline <= now:  # due: the timer has not run yet
                        answer(call, self._late())
                        continue
                    written.append(call)
                    batch += call.chunks
                    size += call.size
                if not batch:
                    continue
                try:
                    await conn.send_packed_command(batch, False)
                    while written:
                        try:
                            reply = await conn.read_response(disconnect_on_error=False)
                        except ResponseError as exc:  # an error reply, read whole: in step
                            reply = exc
                        answer(written.popleft(), reply)
                except _UNAVAILABLE as exc:
                    # The connection failed: whoever was written on it gets the error (a write
                    # may have run: never resent); the next batch reconnects.
                    while written:
                        answer(written.popleft(), exc)
                    await conn.disconnect(nowait=True)
        except Exception as exc:  # anything else (a reply redis-py cannot parse): out of step
            failure = exc
        finally:
            self._end(failure)
            await conn.disconnect(nowait=True)

    def _end(self, failure: BaseException) -> None:
        """The pump has stopped: no new command, and whoever still waits gets ``failure``."""
        self._retire()
        for calls in (self._written, self._queued):
            while calls:
                answer(calls.popleft(), failure)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _retire(self) -> None:
        """Take no new command; hand the ones queued but not written to another ``Pipe``."""
        if self.open:
            self.open = False
            unsent = [call for call in self._queued if not call.future.done()]
            self._queued.clear()
            self._on_retired(self, unsent)

    def _late(self) -> TimeoutError:
        return TimeoutError(f"Redis did not answer within {self._timeout:g} s")

    def _expire(self) -> None:
        """The timer: callers whose deadline passed get a TimeoutError. A written command that
        late, whether its caller still waits or gave up (cancelled), retires the connection: a
        dead one (half-open: no reply, no error, ever) must not keep taking commands. Queued
        calls whose callers gave up are dropped. Armed again for the next deadline."""
        self._timer = None
        now = self._loop.time()
        late = self._late()
        written, queued = self._written, self._queued
        for call in written:  # (at most BATCH)
            if call.deadline <= now:
                answer(call, late)
                self._retire()
        if queued:
            kept = [call for call in queued if not call.future.done() and call.deadline > now]
            if len(kept) != len(queued):
                for call in queued:
                    if call.deadline <= now:
                        answer(call, late)
                queued.clear()
                queued.extend(kept)
        if not self.open and not queued and all(call.future.done() for call in written):
            if self._pump is not None:
                self._pump.cancel()  # nobody waits on it any more: close it
            return
        # A written command keeps the timer armed even when its caller gave up: the
        # connection's health is at stake (those already late have retired it).
        deadlines = [call.deadline for call in written if call.deadline > now]
        deadlines += [call.deadline for call in queued]
        if deadlines:
            self._arm(min(deadlines))

    def _arm(self, deadline: float) -> None:
        self._timer, self._timer_at = self._loop.call_at(deadline, self._expire), deadline

    async def close(self) -> None:
        """Stop: every caller still waiting gets a ConnectionError; the connection is closed."""
        self.open = False
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._end(_closed())
        await self.conn.disconnect(nowait=True)
