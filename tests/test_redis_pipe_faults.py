"""The coalesced script calls (stores/redis/pipe.py, support.Scripts) when things go wrong: a
close racing a call, a dead (half-open) connection, a Redis that forgot its scripts, a stalled
connect. Each caller is answered, within its bound, and nothing is left running or sent late."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from emulator.stores.redis.pipe import Pipe
from emulator.stores.redis.support import Scripts, counting_connection, quiet_handshake

from .redis_server import RedisServer, running_redis

pytestmark = [pytest.mark.anyio]

ECHO = "return ARGV[1]"
INCR = "return redis.call('INCR', KEYS[1])"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def scripts_for(url: str, timeout: float) -> tuple[aioredis.Redis, Scripts, list[int]]:
    """``Scripts`` on a pool as the store builds it, and its count of writes."""
    sent = [0]
    pool = aioredis.ConnectionPool.from_url(
        url, connection_class=counting_connection(sent), protocol=2, **quiet_handshake()
    )
    redis = aioredis.Redis(connection_pool=pool)
    return redis, Scripts(redis, timeout), sent


# -- closing -----------------------------------------------------------------------------------
async def test_a_call_queued_just_before_close_is_answered_not_left_hanging(
    redis_server: RedisServer,
) -> None:
    redis, scripts, _ = scripts_for(redis_server.url, timeout=1.0)
    echo = scripts.register(ECHO)
    request = asyncio.ensure_future(echo([], ["x"]))  # a request's script call
    await asyncio.sleep(0)  # it ran: its call is queued, the pipe's pump task created
    await scripts.close()  # the store closes (shutdown) in that same moment
    try:
        done, _ = await asyncio.wait({request}, timeout=2.0)  # twice the call's own timeout
        assert done, "the caller still waits after close and its own timeout: it hangs forever"
        assert isinstance(request.exception(), RedisConnectionError)
    finally:
        request.cancel()
        await redis.aclose(close_connection_pool=True)


async def test_a_call_during_or_after_close_is_a_connection_error_and_leaves_nothing_running(
    redis_server: RedisServer,
) -> None:
    redis, scripts, _ = scripts_for(redis_server.url, timeout=2.0)
    echo = scripts.register(ECHO)
    assert await echo([], ["x"]) == b"x"

    async def request() -> object:  # e.g. a request's second script call, or a journal flush
        await asyncio.sleep(0)
        return await echo([], ["y"])

    during = asyncio.ensure_future(request())
    await scripts.close()  # the store closes while that request is in flight
    try:
        with pytest.raises(RedisConnectionError):
            await during
        with pytest.raises(RedisConnectionError):
            await echo([], ["z"])
        pumps = [t for t in asyncio.all_tasks() if "Pipe._run" in repr(t.get_coro())]
        assert not pumps and not any(not pipe.closed for pipe in scripts._pipes)
    finally:
        await redis.aclose(close_connection_pool=True)


# -- a dead (half-open) connection -------------------------------------------------------------
class Proxy:
    """A TCP proxy to the Redis on ``port`` on a free loopback port: forwards both ways
    (``hold`` may delay what goes up; ``serve`` may do something else with a connection)."""

    def __init__(self, port: int) -> None:
        self.port, self.count = port, 0
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self.handlers.add(handler)
        self.count += 1
        self.writers.append(w)
        await self.serve(r, w)

    async def serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(uw)

        async def pump(a: asyncio.StreamReader, b: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await a.read(65536):
                    if up:
                        await self.hold(data)
                    b.write(data)
                    await b.drain()
            except OSError:
                pass
            finally:
                b.close()

        await asyncio.gather(pump(r, uw, True), pump(ur, w, False))

    async def hold(self, data: bytes) -> None:
        """Called with each piece on its way to Redis, before it is forwarded."""

    async def stop(self) -> None:
        """Closes every socket and waits (bounded) for the handlers to end: one cancelled
        with the test's loop is logged as an error by asyncio."""
        self.server.close()
        for writer in self.writers:  # (Server.close_clients is Python 3.13's)
            writer.close()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=2)


class BlackHoleFirst(Proxy):
    """A proxy whose first connection swallows everything (a half-open connection: Redis's
    host gone, no RST); later connections are forwarded."""

    async def serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self.count == 1:
            while await r.read(65536):
                pass
            w.close()
            return
        await super().serve(r, w)


async def _dead_first_connection(
    server: RedisServer, seconds: float
) -> tuple[aioredis.Redis, Scripts, list[int], BlackHoleFirst]:
    direct = aioredis.Redis.from_url(server.url, protocol=2)
    await direct.script_load(ECHO)  # no NOSCRIPT round on the forwarded connections
    await direct.aclose()
    proxy = BlackHoleFirst(server.port)
    redis, scripts, sent = scripts_for(await proxy.start(), seconds)
    return redis, scripts, sent, proxy


async def _written(sent: list[int], count: int) -> None:
    for _ in range(1000):  # bounded: the event loop's own passes
        if sent[0] >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{count} writes expected, {sent[0]} made")


@pytest.mark.parametrize("gives_up", ["cancelled", "timed out"])
async def test_a_dead_connection_is_retired_whichever_way_its_written_caller_gave_up(
    redis_server: RedisServer, gives_up: str
) -> None:
    redis, scripts, sent, proxy = await _dead_first_connection(redis_server, seconds=0.3)
    echo = scripts.register(ECHO)
    try:
        first = asyncio.ensure_future(echo([], ["a"]))  # written on the dead connection
        await _written(sent, 1)
        if gives_up == "cancelled":  # its caller gave up (request aborted, a cancel scope...)
            first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.sleep(0.4)  # past the first call's deadline (the pipe's own timer runs)
        # Later calls: a healthy connection is one connect away. Each gets its reply.
        replies = [await echo([], [str(n)]) for n in range(3)]
        assert replies == [b"0", b"1", b"2"]
    finally:
        await scripts.close()
        await redis.aclose(close_connection_pool=True)
        await proxy.stop()


async def test_calls_timed_out_behind_a_dead_connection_are_not_kept(
    redis_server: RedisServer,
) -> None:
    redis, scripts, sent, proxy = await _dead_first_connection(redis_server, seconds=0.2)
    echo = scripts.register(ECHO)
    try:
        first = asyncio.ensure_future(echo([], ["a"]))
        await _written(sent, 1)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        for _ in range(3):
            calls = (echo([], ["x" * 1000]) for _ in range(500))
            await asyncio.gather(*calls, return_exceptions=True)
        held = [call for pipe in scripts._pipes for call in pipe._queued]
        assert len(held) < 500, f"{len(held)} timed-out calls still held"
    finally:
        await scripts.close()
        await redis.aclose(close_connection_pool=True)
        await proxy.stop()


# -- a Redis that forgot its scripts (a restart) -----------------------------------------------
@pytest.mark.parametrize("callers", [60, 150])
async def test_a_wave_of_callers_meeting_noscript_is_answered_with_no_new_connection(
    redis_server: RedisServer, callers: int
) -> None:
    # Each of them used to load the script through the pool, on a connection of its own: a
    # burst of connections, and past the pool's 100 a MaxConnectionsError (a 503).
    redis, scripts, _ = scripts_for(redis_server.url, timeout=5.0)
    echo = scripts.register(ECHO)
    try:
        assert await echo([], ["w"]) == b"w"
        await redis.script_flush()  # as after a Redis restart
        before = (await redis.info("stats"))["total_connections_received"]
        calls = (echo([], [str(n)]) for n in range(callers))
        replies = await asyncio.gather(*calls, return_exceptions=True)
        opened = (await redis.info("stats"))["total_connections_received"] - before
        assert replies == [str(n).encode() for n in range(callers)]
        assert opened == 0
    finally:
        await scripts.close()
        await redis.aclose(close_connection_pool=True)


# -- a stalled connect -------------------------------------------------------------------------
@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, to stop and resume."""
    yield from running_redis()


async def test_a_call_whose_caller_timed_out_while_connecting_is_never_sent(
    own_server: RedisServer,
) -> None:
    # A URL naming a database: connecting sends SELECT, which a stopped Redis does not answer,
    # so the pump waits in connect() with both calls queued.
    url = f"redis://127.0.0.1:{own_server.port}/1"
    admin = aioredis.Redis.from_url(url, protocol=2)
    sha = await admin.script_load(INCR)
    pool = aioredis.ConnectionPool.from_url(
        url, connection_class=counting_connection([0]), protocol=2, **quiet_handshake()
    )
    conn = pool.make_connection()
    pipe = Pipe(conn, timeout=5.0, on_retired=lambda pipe, calls: None)
    loop = asyncio.get_running_loop()
    assert own_server.process is not None
    os.kill(own_server.process.pid, signal.SIGSTOP)
    try:
        # One call handed over from a retired connection (an older deadline) and one new one.
        old = pipe.command("EVALSHA", sha, 1, "n", deadline=loop.time() + 0.3)
        pipe.take(old)
        new = pipe.call("EVALSHA", sha, 1, "n")
        with pytest.raises(TimeoutError):
            await old.future  # its caller has given up: a 503 for a write
    finally:
        os.kill(own_server.process.pid, signal.SIGCONT)
    try:
        assert await asyncio.wait_for(new, 5) == 1  # bounded, for a failure
        assert await admin.get("n") == b"1"  # the given-up call never ran
    finally:
        await pipe.close()
        await admin.aclose()
        await pool.disconnect()


# -- NOSCRIPT within the call's own deadline ---------------------------------------------------
class SlowScripts(Proxy):
    """A proxy that holds each write carrying EVALSHA or SCRIPT LOAD for ``delay`` seconds (a
    slow network, a busy Redis)."""

    delay = 0.0

    async def hold(self, data: bytes) -> None:
        if b"EVALSHA" in data or b"LOAD" in data:
            await asyncio.sleep(self.delay)


async def test_a_call_meeting_noscript_is_answered_within_its_own_timeout(
    redis_server: RedisServer,
) -> None:
    # The load and the call again go out together (one round trip), within the deadline the
    # call had from the start: a read (tried twice) waits about twice the timeout at most, as
    # docs/scaling.md says; it used to be a fresh timeout for the load and another for the
    # call again (with guard_read's retry, up to six times the timeout).
    timeout = 1.0  # wide margins: a loaded machine must not decide it
    proxy = SlowScripts(redis_server.port)
    redis, scripts, _ = scripts_for(await proxy.start(), timeout)
    echo = scripts.register(ECHO)
    loop = asyncio.get_running_loop()
    try:
        proxy.delay = 0.2  # two round trips fit in the timeout: answered
        await redis.script_flush()  # as after a Redis restart
        assert await echo([], ["x"]) == b"x"
        proxy.delay = 0.8  # the first round trip alone takes most of it
        await redis.script_flush()
        began = loop.time()
        with pytest.raises(TimeoutError):
            await echo([], ["y"])
        took = loop.time() - began
        assert took < 1.5 * timeout, f"answered after {took:.2f} s ({took / timeout:.1f}x)"
    finally:
        await scripts.close()
        await redis.aclose(close_connection_pool=True)
        await proxy.stop()


# -- a Redis that keeps forgetting its scripts -------------------------------------------------
async def _forgetful_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A RESP server that loads every script and then answers NOSCRIPT to every EVALSHA (as a
    Redis flushed again between a load and the call would); anything else is +OK."""
    try:
        while line := await reader.readline():
            words = []
            for _ in range(int(line[1:])):
                size = int((await reader.readline())[1:])
                words.append((await reader.readexactly(size + 2))[:-2])
            name = words[0].upper()
            if name == b"EVALSHA":
                writer.write(b"-NOSCRIPT No matching script. Please use EVAL.\r\n")
            elif name == b"SCRIPT":
                writer.write(b"$40\r\n" + b"0" * 40 + b"\r\n")
            else:
                writer.write(b"+OK\r\n")
            await writer.drain()
    finally:
        writer.close()


async def test_a_script_redis_forgets_again_after_its_reload_is_a_connection_error() -> None:
    # The script never ran (NOSCRIPT), so the caller may be told "unavailable" (a 503 through
    # guard), never handed a ResponseError that the app would answer with a 500.
    server = await asyncio.start_server(_forgetful_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis, scripts, _ = scripts_for(f"redis://127.0.0.1:{port}/0", timeout=2.0)
    try:
        with pytest.raises(RedisConnectionError, match="lost the script again"):
            await scripts.register(ECHO)([], ["x"])
    finally:
        await scripts.close()
        await redis.aclose(close_connection_pool=True)
        server.close()
        await server.wait_closed()
