"""The parts of ``RedisStore`` that are not store operations: its connection pool, turning Redis
trouble into a 503, counting round trips, a request's snapshot, sending scripts, and the journal
written behind."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...core.faults import FaultRule
from ...errors import StoreUnavailable
from .pipe import Call, Pipe, answer

P = ParamSpec("P")
R = TypeVar("R")
#: The store a guarded method belongs to.
S = TypeVar("S")
#: How long one request's snapshot answers its reads; a request that waits longer (an injected
#: latency, a hang) reads again, so a snapshot never stands for a moment long gone.
SNAPSHOT_SECONDS = 0.05
#: The pool's size (redis-py's default in version 8; unbounded in earlier ones).
POOL_CONNECTIONS = 100


@dataclass
class Snapshot:
    """What one request read: the rules, the manual clock, and its tasks' charge states."""

    at: float = 0.0
    faults: list[FaultRule] | None = None
    clock: float = 0.0
    charges: dict[str, str | None] = field(default_factory=dict)

    def fresh(self) -> bool:
        return self.faults is not None and time.monotonic() - self.at <= SNAPSHOT_SECONDS


class RequestScope:
    """``async with`` around one request: a fresh snapshot for its reads. A plain class, not
    ``contextlib.asynccontextmanager`` (a generator and its wrapper per request, measured)."""

    __slots__ = ("_token", "_var")
    _token: Token[Snapshot | None]

    def __init__(self, var: ContextVar[Snapshot | None]) -> None:
        self._var = var

    async def __aenter__(self) -> RequestScope:
        self._token = self._var.set(Snapshot())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._var.reset(self._token)


_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def _unavailable(exc: Exception) -> StoreUnavailable:
    # BusyLoadingError (Redis still reading its AOF after a restart) is a ConnectionError.
    return StoreUnavailable(
        f"the emulator's store (Redis) is unavailable, retry shortly: {exc}",
        headers={"Retry-After": "1"},
    )


def guard(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """For a write: "Redis cannot answer" becomes StoreUnavailable (503), and the write is
    never sent again (the first one may have reached Redis). Its script's deadline makes sure
    that one cannot run after the caller has answered (``LATE``, also a 503)."""

    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from None
        except ResponseError as exc:
            if str(exc).startswith("LATE"):
                raise _unavailable(exc) from None
            raise

    functools.update_wrapper(run, method)
    return run


def guard_read(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """For a read: like ``guard``, but a failed read is tried once more (on a fresh connection:
    the failed one was dropped), since reading twice changes nothing. That also reconnects
    pooled connections that a Redis restart left dead."""

    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except _UNAVAILABLE:
            pass
        try:
            return await method(self, *args, **kwargs)
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from None

    functools.update_wrapper(run, method)
    return run


def deadline(timeout: float) -> str:
    """A write's deadline (Redis's TIME, seconds): well inside the socket timeout, so a script
    Redis runs late never acts after its caller has given up and answered. Hosts' clocks must
    agree with Redis's (NTP) to well within half the timeout."""
    return repr(time.time() + timeout / 2)


def counting_connection(counter: list[int]) -> type[Connection]:
    """A connection class counting what it sends: one send is one round trip (a pipeline or a
    script is one send), so the count measures what each request costs.

    It packs commands with hiredis's C ``pack_command`` (public), as redis-py's own synchronous
    connection does when hiredis is installed: the asyncio connection packs in Python, about a
    quarter of the client's instructions per script call (callgrind). Whatever hiredis will not
    pack (a type it does not know) goes to redis-py's packer, which raises its own error."""

    class CountingConnection(Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter[0] += 1
            await super().send_packed_command(command, check_health)

        def pack_command(self, *args: Any) -> list[bytes]:
            # redis-py sends a command name with a space ("SCRIPT LOAD") as two arguments.
            if " " in args[0] if isinstance(args[0], str) else b" " in args[0]:
                return super().pack_command(*args)
            try:
                return [hiredis.pack_command(args)]
            except (TypeError, ValueError):
                return super().pack_command(*args)

    return CountingConnection


def quiet_handshake() -> dict[str, Any]:
    """Connection options that skip CLIENT SETINFO (its spelling changed in redis 7.x/8)."""
    if "driver_info" in inspect.signature(AbstractConnection.__init__).parameters:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


def connection_pool(url: str, timeout: float, sent: list[int]) -> aioredis.ConnectionPool:
    """The store's own pool on ``url``: its sockets time out after ``timeout`` seconds, and
    each command, pipeline or script sent adds one to ``sent[0]``."""
    return aioredis.ConnectionPool.from_url(
        url,
        connection_class=counting_connection(sent),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # Never resend behind the caller's back: guard_read retries reads by itself.
        retry=Retry(NoBackoff(), 0),
        # Bounded whatever the version: script calls (loads included) go on the store's own
        # pipe, so the pool serves only the other commands (ping, listings, counters, blobs);
        # a burst past it is a 503 (MaxConnectionsError), never a storm of connections.
        max_connections=POOL_CONNECTIONS,
        protocol=2,  # no HELLO, and with quiet_handshake no CLIENT SETINFO, on connect
        **quiet_handshake(),
    )


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def check_url(url: str) -> None:
    """ValueError naming the URL unless it is one ``redis`` can open."""
    try:
        aioredis.ConnectionPool.from_url(url)
    except (ValueError, RedisError) as exc:
        raise ValueError(f"store {url!r} is not a usable Redis URL: {exc}") from None


class Scripts:
    """Lua scripts sent on connections of the store's own, not through ``Redis``'s command
    path: every step on a request's path is one script, and redis-py's generic path (its pool's
    lock and bookkeeping, a retry wrapper, metrics hooks, a task per send for the socket
    timeout) cost the worker more than the rest of a poll (callgrind).

    The calls of concurrent requests share one connection and travel in batches, one write and
    one read per batch (``pipe.Pipe``: the rules on ordering, deadlines and errors are there).
    Each call is bounded by ``timeout`` from when it was queued (``socket_timeout`` is off on
    these connections); a timeout is a ``TimeoutError``, which ``guard`` turns into a 503. A
    call is never resent, except after ``NOSCRIPT`` (the script did not run: a restarted Redis
    forgot it), once, right behind a ``SCRIPT LOAD`` on the same connection (``_reload``)."""

    def __init__(self, client: aioredis.Redis, timeout: float) -> None:
        pool = client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        self._client, self._timeout = client, timeout
        self._new: Callable[[], AbstractConnection] = lambda: pool.connection_class(**kwargs)
        self._pipe: Pipe | None = None
        #: The current pipe and those retired (each closes itself once nobody waits on it).
        self._pipes: set[Pipe] = set()
        self._closed = False
        #: The ``SCRIPT LOAD`` in flight for each script (by SHA), and the pipe it went on.
        self._loading: dict[str, tuple[Pipe, asyncio.Future[Any]]] = {}

    def register(self, text: str) -> Script:
        return Script(self, self._client.register_script(text))

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """The script's answer (an error reply raised as redis-py raises it)."""
        pipe = self._current()
        call = pipe.command("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await pipe.take(call)
        except NoScriptError:
            return await self._reload(script, call)

    async def _reload(self, script: AsyncScript, call: Call) -> Any:
        """After ``NOSCRIPT``: ``SCRIPT LOAD`` then the call again, on the current connection,
        queued together (one round trip; Redis runs them in order), both due by the call's own
        deadline. Callers meeting ``NOSCRIPT`` at once share one load per connection: a wave
        of them after a restart used to load through the pool, a connection each (past the
        pool's size: 503s)."""
        pipe = self._current()
        loading = self._loading.get(script.sha)
        if loading is None or loading[0] is not pipe:
            load = pipe.take(pipe.command("SCRIPT", "LOAD", script.script, deadline=call.deadline))
            self._loading[script.sha] = (pipe, load)
            load.add_done_callback(functools.partial(self._loaded, script.sha))
        # Within the deadline the call had from the start: one call, one timeout (a read's
        # retry in guard_read makes twice the timeout, at most, docs/scaling.md).
        again = Call(call.chunks, call.future.get_loop().create_future(), call.deadline)
        try:
            return await pipe.take(again)
        except NoScriptError as exc:
            # Forgotten again (flushed between the load and the call, or the load refused):
            # the script did not run, so "unavailable" (a 503) is true, where the error reply
            # itself would reach the app as a 500.
            raise RedisConnectionError(
                f"Redis lost the script again after loading it: {exc}"
            ) from exc

    def _loaded(self, sha: str, load: asyncio.Future[Any]) -> None:
        # Its error, if any, reaches the callers as NOSCRIPT on their own call again.
        if not load.cancelled():
            load.exception()
        if self._loading.get(sha, (None, None))[1] is load:
            del self._loading[sha]

    def _current(self) -> Pipe:
        pipe = self._pipe
        if pipe is None or not pipe.open:
            if self._closed:  # a call racing the store's close: a 503, no pipe left behind
                raise RedisConnectionError("the store is closed")
            self._pipes = {kept for kept in self._pipes if not kept.closed}
            pipe = self._pipe = Pipe(self._new(), self._timeout, self._retired)
            self._pipes.add(pipe)
        return pipe

    def _retired(self, pipe: Pipe, unsent: list[Any]) -> None:
        """``pipe`` takes no more commands: those it had not written go to a new one."""
        if self._pipe is pipe:
            self._pipe = None
        if unsent:
            try:
                fresh = self._current()
            except RedisConnectionError as closed:
                for call in unsent:
                    answer(call, closed)
                return
            for call in unsent:
                fresh.take(call)

    async def close(self) -> None:
        """Close every connection; a call from now on is a ConnectionError (a 503)."""
        self._closed = True
        pipes, self._pipes, self._pipe = list(self._pipes), set(), None
        for pipe in pipes:
            await pipe.close()


class Script:
    """A Lua script called as ``await script(keys, args)``, through ``Scripts``."""

    __slots__ = ("_calls", "script")

    def __init__(self, calls: Scripts, script: AsyncScript) -> None:
        self._calls, self.script = calls, script

    def __call__(self, keys: list[str], args: list[Any] | None = None) -> Coroutine[Any, Any, Any]:
        return self._calls.call(self.script, keys, args or [])


class JournalWriter:
    """Journal entries written behind: a request does not wait for its entry, and one round
    trip (one script call) carries every entry queued meanwhile. Never raises: the journal is
    diagnostics, and an outage must not fail the requests it records (its entries are lost,
    and counted in ``lost``: never numbered, so no page's ``dropped`` could tell them)."""

    #: Entries per round trip, and at most kept waiting (the oldest are dropped first).
    BATCH = 256
    BACKLOG = 10_000

    def __init__(self, script: Script, keys: list[str]) -> None:
        self._script, self._keys = script, keys
        self._backlog: list[tuple[str, int]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Entries given and not written (`Store.journal_lost`; the store starts it again). A
        #: batch whose call failed counts whole: a timeout may come after Redis ran it, and
        #: a journal said to miss entries it holds is the safe side of that doubt.
        self.lost = 0

    def add(self, entry: str, limit: int) -> None:
        self._backlog.append((entry, limit))
        if len(self._backlog) > self.BACKLOG:
            self.lost += len(self._backlog) - self.BACKLOG
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
            # One script call for the whole batch (not a pipeline of one per entry: the
            # client's CPU per command is what a worker on Redis spends most on).
            flat: list[str | int] = []
            for data, limit in batch:
                flat += (data, limit)
            try:
                await self._script(self._keys, flat)
            except (RedisError, OSError):  # an outage: these entries are lost
                self.lost += len(batch)
