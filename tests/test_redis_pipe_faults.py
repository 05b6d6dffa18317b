"""The coalesced script calls (stores/redis/pipe.py, support.Scripts) when things go wrong: a
close racing a call, a dead (half-open) connection, a Redis that forgot its scripts, a stalled
connect. Each caller is answered, within its bound, and nothing is left running or sent late."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from emulator.stores.redis.support import Scripts, counting_connection, quiet_handshake

from .redis_server import RedisServer, running_redis

pytestmark = [pytest.mark.anyio]

ECHO = "return ARGV[1]"


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
