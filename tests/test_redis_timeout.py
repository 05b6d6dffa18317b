"""The ``redis_timeout`` setting bounds each call to a Redis store: a stall shorter than it is
waited out, a longer one answers 503 (tests/test_atomicity.py proves such a 503 never acts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from emulator import Settings, create_app
from emulator.errors import ConfigError

from .redis_server import RedisServer, running_redis
from .test_atomicity import stalled

KEY = "sk-timeout-key"
NANO = {"model": "NanoBanana", "prompt": "a lighthouse"}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


def _submit_during_stall(server: RedisServer, stall: float, **overrides: float) -> int:
    prefix = f"timeout-{time.monotonic_ns()}"
    settings = Settings(seed=3, api_keys=(KEY,), store=server.url, store_prefix=prefix)
    app = create_app(settings.replace(**overrides))

    async def run() -> int:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://emu", headers=headers
        ) as client:
            # Warm: the first submission opens connections and loads the scripts.
            assert (await client.post("/v1/images/tasks", json=NANO)).status_code == 200
            with stalled(server, stall):
                status = (await client.post("/v1/images/tasks", json=NANO)).status_code
            await app.state.emulator.store.reset()
            await app.state.emulator.store.close()
            return status

    return asyncio.run(run())


# A read that times out is tried once more (docs/scaling.md): a stall shorter than two
# timeouts can still be waited out, so the stalls below are each past two of the one they test
# and within one of the other.
def test_a_short_redis_timeout_answers_503_during_a_stall(redis_server: RedisServer) -> None:
    assert _submit_during_stall(redis_server, 1.0, redis_timeout=0.3) == 503


def test_a_long_redis_timeout_waits_out_a_stall_past_two_default_timeouts(
    redis_server: RedisServer,
) -> None:
    assert _submit_during_stall(redis_server, 2.5, redis_timeout=6.0) == 200


@pytest.mark.parametrize("value", [0.0, 0.01, 601.0, float("nan"), float("inf")])
def test_a_redis_timeout_out_of_range_is_refused_naming_the_setting(value: float) -> None:
    with pytest.raises((ConfigError, ValueError), match="redis_timeout"):
        Settings().replace(redis_timeout=value)


def test_redis_timeout_comes_from_the_flag_and_the_environment() -> None:
    from emulator.cli import _parser, settings_from_args

    flag = _parser().parse_args(["serve", "--redis-timeout", "2.5"])
    assert settings_from_args(flag, {}).redis_timeout == 2.5
    plain = _parser().parse_args(["serve"])
    assert settings_from_args(plain, {"EMULATOR_REDIS_TIMEOUT": "4"}).redis_timeout == 4.0
    assert settings_from_args(plain, {}).redis_timeout == 1.0
