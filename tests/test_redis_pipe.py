"""Script calls of concurrent requests coalesced onto one connection (stores/redis/pipe.py),
against a real redis-server: batched, yet each caller gets its own reply or error, within its
own deadline, and no command is ever written twice or after its caller gave up."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from emulator.stores.redis import RedisStore
from emulator.stores.redis.pipe import Call, Pipe
from emulator.stores.redis.support import Script, Scripts, counting_connection, quiet_handshake

from .redis_server import RedisServer, running_redis
from .store_support import make_task, place

pytestmark = [pytest.mark.anyio]

ECHO = "return ARGV[1]"
ODD_FAILS = (
    "if tonumber(ARGV[1]) % 2 == 1 then return redis.error_reply('ODD ' .. ARGV[1]) end "
    "return ARGV[1]"
)
INCR = "return redis.call('INCR', KEYS[1])"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Client:
    """``Scripts`` as the store builds them, with the count of writes (one per batch)."""

    def __init__(self, server: RedisServer, timeout: float) -> None:
        self.sent = [0]
        pool = aioredis.ConnectionPool.from_url(
            server.url,
            connection_class=counting_connection(self.sent),
            protocol=2,
            **quiet_handshake(),
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self.scripts = Scripts(self.redis, timeout)

    def script(self, text: str) -> Script:
        return self.scripts.register(text)

    async def written(self, count: int) -> None:
        """Until ``count`` writes went out (bounded: the event loop's own passes)."""
        for _ in range(1000):
            if self.sent[0] >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{count} writes expected, {self.sent[0]} made")

    async def close(self) -> None:
        await self.scripts.close()
        await self.redis.aclose(close_connection_pool=True)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Client]:
    made = Client(redis_server, timeout=10.0)
    yield made
    await made.close()


@contextmanager
def stopped(server: RedisServer) -> Iterator[None]:
    """Redis answers nothing (SIGSTOP) until the block ends."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


async def test_concurrent_calls_share_writes_and_each_gets_its_own_reply(client: Client) -> None:
    echo = client.script(ECHO)
    await echo([], ["warm"])  # the script is loaded, the connection open
    before = client.sent[0]
    replies = await asyncio.gather(*(echo([], [str(n)]) for n in range(50)))
    assert replies == [str(n).encode() for n in range(50)]
    assert client.sent[0] - before <= 2  # not one write per call
    assert await echo([], ["after"]) == b"after"


async def test_an_error_reply_reaches_only_its_caller(client: Client) -> None:
    odd_fails = client.script(ODD_FAILS)
    replies = await asyncio.gather(
        *(odd_fails([], [str(n)]) for n in range(20)), return_exceptions=True
    )
    for n, reply in enumerate(replies):
        if n % 2:
            assert isinstance(reply, ResponseError) and str(reply) == f"ODD {n}"
        else:
            assert reply == str(n).encode()


async def test_a_batch_is_bounded_in_commands_and_in_bytes(client: Client) -> None:
    echo = client.script(ECHO)
    await echo([], ["warm"])
    before = client.sent[0]
    count = 3 * Pipe.BATCH + 1
    assert len(await asyncio.gather(*(echo([], [str(n)]) for n in range(count)))) == count
    assert client.sent[0] - before >= 4
    big = "x" * (Pipe.BATCH_BYTES * 3 // 4)
    before = client.sent[0]
    assert await asyncio.gather(*(echo([], [big]) for _ in range(3))) == [big.encode()] * 3
    assert client.sent[0] - before == 3


async def test_scripts_redis_forgot_are_loaded_again_and_each_call_runs_once(
    client: Client,
) -> None:
    incr = client.script(INCR)
    await client.redis.script_flush()
    counts = await asyncio.gather(*(incr(["pipe:noscript"]) for _ in range(10)))
    assert sorted(counts) == list(range(1, 11))
    assert await client.redis.get("pipe:noscript") == b"10"


# -- callers that give up ----------------------------------------------------------------------
@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, to stop and resume."""
    yield from running_redis()


async def test_a_call_given_up_before_its_batch_was_written_is_never_sent(
    own_server: RedisServer,
) -> None:
    client = Client(own_server, timeout=10.0)
    incr = client.script(INCR)
    try:
        await incr(["warm"])
        with stopped(own_server):
            first = asyncio.ensure_future(incr(["a"]))
            await client.written(2)  # "a" is on its way; what comes now waits behind it
            second = asyncio.ensure_future(incr(["b"]))
            await asyncio.sleep(0)
            second.cancel()
        assert await first == 1
        assert await incr(["c"]) == 1  # the connection is in step
        assert await client.redis.get("b") is None
    finally:
        await client.close()


async def test_a_caller_cancelled_after_its_command_was_written_takes_no_ones_reply(
    own_server: RedisServer,
) -> None:
    client = Client(own_server, timeout=10.0)
    echo = client.script(ECHO)
    try:
        await echo([], ["warm"])
        with stopped(own_server):
            calls = [asyncio.ensure_future(echo([], [str(n)])) for n in range(5)]
            await client.written(2)
            calls[1].cancel()
        replies = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(replies[1], asyncio.CancelledError)
        assert [replies[n] for n in (0, 2, 3, 4)] == [b"0", b"2", b"3", b"4"]
        assert await echo([], ["next"]) == b"next"
    finally:
        await client.close()


async def test_a_late_reply_retires_its_connection_and_calls_behind_it_go_on_another(
    own_server: RedisServer,
) -> None:
    # The late caller gets a TimeoutError at its deadline; the call queued behind it (not yet
    # written, a later deadline) goes to a new connection and gets its own reply there, not
    # the late one's.
    sent = [0]

    def connection() -> AbstractConnection:
        kind = counting_connection(sent)
        return kind(
            host="127.0.0.1",
            port=own_server.port,
            protocol=2,
            socket_timeout=None,
            **quiet_handshake(),
        )

    pipes: list[Pipe] = []

    def retired(pipe: Pipe, unsent: list[Call]) -> None:
        fresh = Pipe(connection(), 0.5, retired)
        pipes.append(fresh)
        for call in unsent:
            fresh.take(call)

    loop = asyncio.get_running_loop()
    first = Pipe(connection(), 0.5, retired)
    try:
        assert await first.call("PING") == b"PONG"
        with stopped(own_server):
            started = time.monotonic()
            late = first.call("ECHO", "late")
            for _ in range(1000):  # until it is written (bounded: event-loop passes)
                if sent[0] == 2:
                    break
                await asyncio.sleep(0)
            assert sent[0] == 2
            behind = first.command("ECHO", "behind", deadline=loop.time() + 10)
            first.take(behind)
            with pytest.raises(TimeoutError):
                await late
            assert time.monotonic() - started < 2.0  # bounded by the timeout (0.5 s)
            assert not first.open and len(pipes) == 1 and not behind.future.done()
        assert await asyncio.wait_for(behind.future, 5) == b"behind"  # bounded, for a failure
        assert await pipes[0].call("ECHO", "next") == b"next"
    finally:
        for pipe in (first, *pipes):
            await pipe.close()


async def test_a_call_written_with_a_late_one_waits_for_its_own_reply_until_its_own_deadline(
    own_server: RedisServer,
) -> None:
    # Two calls in one batch; the first's deadline passes while Redis is stopped. The second
    # must not be failed with it: a write answered 503 must never run afterwards, which its
    # script's deadline guarantees only from that deadline on. It gets its own reply.
    conn = counting_connection([0])(
        host="127.0.0.1",
        port=own_server.port,
        protocol=2,
        socket_timeout=None,  # as Scripts opens them: the pipe's deadlines bound each call
        **quiet_handshake(),
    )
    retired: list[list[Call]] = []
    pipe = Pipe(conn, 10.0, lambda _, unsent: retired.append(unsent))
    loop = asyncio.get_running_loop()
    try:
        assert await pipe.call("PING") == b"PONG"
        with stopped(own_server):
            short = pipe.command("ECHO", "short", deadline=loop.time() + 0.3)
            long = pipe.command("ECHO", "long", deadline=loop.time() + 10)
            pipe.take(short)
            pipe.take(long)
            with pytest.raises(TimeoutError):
                await short.future
            assert retired == [[]] and not pipe.open  # nothing queued was left unwritten
            assert not long.future.done()
        assert await asyncio.wait_for(long.future, 5) == b"long"  # bounded, for a failure
    finally:
        await pipe.close()


async def test_concurrent_polls_of_one_store_share_writes_and_each_counts_once(
    redis_server: RedisServer,
) -> None:
    store = RedisStore(redis_server.url, f"pipe-polls-{time.monotonic_ns()}", timeout=10.0)
    task = make_task(1, steps=1000)
    try:
        await place(store, task)
        await store.count_poll(task.task_id)  # Redis learns the script
        before = store.round_trips
        counted = await asyncio.gather(*(store.count_poll(task.task_id) for _ in range(50)))
        assert store.round_trips - before <= 10  # one by one, they would take 50
        assert sorted(t.polls for t in counted if t is not None) == list(range(2, 52))
    finally:
        await store.reset()
        await store.close()


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})])
async def test_on_uvloop_a_call_handed_over_already_late_keeps_the_pipe_working(
    redis_server: RedisServer,
) -> None:
    # `serve` runs on uvloop when it is installed. Its call_at answers a plain Handle (no
    # when()) for a deadline passed or under a millisecond away, as a call handed over from a
    # retired connection can have: the next call on that pipe raised AttributeError (a 500).
    import uvloop

    loop = asyncio.get_running_loop()
    assert isinstance(loop, uvloop.Loop)
    pipe = Pipe(
        aioredis.Connection(host="127.0.0.1", port=redis_server.port, **quiet_handshake()),
        5.0,
        lambda pipe, unsent: None,
    )
    try:
        late = pipe.command("ECHO", "late", deadline=loop.time() - 0.5)
        pipe.take(late)
        assert await pipe.call("ECHO", "next") == b"next"
        with pytest.raises(TimeoutError):
            await late.future
        assert await pipe.call("ECHO", "again") == b"again"
    finally:
        await pipe.close()
