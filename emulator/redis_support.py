"""The parts of ``RedisStore`` that are not store operations: turning Redis trouble into a 503,
counting round trips, a request's snapshot, and reading stored values back."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .billing import Charge
from .errors import StoreUnavailable
from .faults import FaultRule
from .tasks import Task

if TYPE_CHECKING:
    from .redis_store import RedisStore

P = ParamSpec("P")
R = TypeVar("R")
#: How long one request's snapshot answers its reads; a request that waits longer (an injected
#: latency, a hang) reads again, so a snapshot never stands for a moment long gone.
SNAPSHOT_SECONDS = 0.05


@dataclass
class Snapshot:
    """What one request read: the rules, the manual clock, and its tasks' charge states."""

    at: float = 0.0
    faults: list[FaultRule] | None = None
    clock: float = 0.0
    charges: dict[str, str | None] = field(default_factory=dict)

    def fresh(self) -> bool:
        return self.faults is not None and time.monotonic() - self.at <= SNAPSHOT_SECONDS


def guard(
    method: Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, R]]:
    """Turn "Redis cannot answer" into StoreUnavailable (503), whatever the operation."""

    async def run(self: RedisStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            # BusyLoadingError (Redis still reading its AOF after a restart) is one of these.
            raise StoreUnavailable(
                f"the emulator's store (Redis) is unavailable, retry shortly: {exc}",
                headers={"Retry-After": "1"},
            ) from None

    functools.update_wrapper(run, method)
    return run


def counting_connection(counter: list[int]) -> type[Connection]:
    """A connection class counting what it sends: one send is one round trip (a pipeline or a
    script is one send), so the count measures what each request costs."""

    class CountingConnection(Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter[0] += 1
            await super().send_packed_command(command, check_health)

    return CountingConnection


def quiet_handshake() -> dict[str, Any]:
    """Connection options that skip CLIENT SETINFO (its spelling changed in redis 7.x/8)."""
    if "driver_info" in inspect.signature(AbstractConnection.__init__).parameters:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


def text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def task_of(data: bytes | str, polls: bytes | str | int) -> Task:
    raw = json.loads(data)
    raw["polls"] = int(polls)
    return Task.from_dict(raw)


#: A charge's hash fields: its JSON as held, then what settling changes.
CHARGE_FIELDS = ("d", "state", "images", "amount", "settled_at")


def charge_of(row: list[Any]) -> Charge:
    """A charge from its CHARGE_FIELDS values."""
    data, state, images, amount, settled_at = row
    raw = json.loads(data)
    raw.update(
        state=text(state),
        images=int(images),
        amount=int(amount),
        settled_at=float(settled_at) if settled_at else None,
    )
    return Charge(**raw)


def rule_of(data: bytes | str) -> FaultRule:
    return FaultRule.from_dict(json.loads(data))


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def check_url(url: str) -> None:
    """ValueError naming the URL unless it is one ``redis`` can open."""
    try:
        aioredis.ConnectionPool.from_url(url)
    except (ValueError, RedisError) as exc:
        raise ValueError(f"store {url!r} is not a usable Redis URL: {exc}") from None


class JournalWriter:
    """Journal entries written behind: a request does not wait for its entry, and one round
    trip (a pipeline) carries every entry queued meanwhile. Never raises: the journal is
    diagnostics, and an outage must not fail the requests it records."""

    #: Entries per round trip, and at most kept waiting (the oldest are dropped first).
    BATCH = 256
    BACKLOG = 10_000

    def __init__(self, client: aioredis.Redis, script: AsyncScript, keys: list[str]) -> None:
        self._client, self._script, self._keys = client, script, keys
        self._backlog: list[tuple[str, int]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.dropped = 0

    def add(self, entry: str, limit: int) -> None:
        self._backlog.append((entry, limit))
        if len(self._backlog) > self.BACKLOG:
            self.dropped += len(self._backlog) - self.BACKLOG
            del self._backlog[: -self.BACKLOG]
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def drain(self) -> None:
        """Wait until every queued entry is written (before the journal is read)."""
        while self._flusher is not None and not self._flusher.done():
            await self._flusher
        if self._backlog:
            await self._flush()

    async def _flush(self) -> None:
        while self._backlog:
            batch = self._backlog[: self.BATCH]
            del self._backlog[: self.BATCH]
            try:
                try:
                    await self._write(batch)
                except NoScriptError:  # a restarted Redis forgot the script: once more
                    await self._client.script_load(self._script.script)
                    await self._write(batch)
            except (RedisError, OSError):
                self.dropped += len(batch)

    async def _write(self, batch: list[tuple[str, int]]) -> None:
        # EVALSHA by hand: a pipeline running Script objects asks SCRIPT EXISTS every time.
        async with self._client.pipeline(transaction=False) as pipe:
            for data, limit in batch:
                pipe.evalsha(self._script.sha, len(self._keys), *self._keys, data, limit)
            await pipe.execute()
