"""State in Redis, so several worker processes (and hosts) serve one emulator.

Every key starts with ``<prefix>:``; ``reset`` deletes only those. Each store operation is one
round trip: a single command, a MULTI pipeline, or a Lua script where a decision depends on what
is stored (a fault's hit budget, a balance, a task id already taken). Redis runs a script alone,
so those decisions are atomic across every worker without locks.

Layout (P = prefix):
  P:task:<id>   hash d=task JSON, p=poll count      P:tasks        zset id by submission order
  P:ends        zset id by end time (expiry)        P:clock        manual clock, "%.17g" text
  P:blob:<key>  bytes (ref:<id>: removed with its task; others with a TTL)
  P:faults      hash id -> rule JSON                P:faults:order zset id by insertion order
  P:faults:evals / P:faults:hits  hash id -> count  P:journal      list of "<seq>\\n<JSON>"
  P:charge:<id> hash d=charge JSON + mutable fields P:charges      zset id by hold order
  P:balances / P:balances:labels  hash owner -> ... P:seq:*        counters
  P:streams     id streams handed out (survives reset, see ``claim_id_stream``)

What a request costs (``round_trips`` counts): inside ``request_scope`` the first read of the
task, the rules or the clock fetches all of them and the task's charge state in one script, and
later reads in the request use that snapshot (for at most ``SNAPSHOT_SECONDS``). A submission
writes task, hold and reference picture in one script (``insert_held``). Journal entries are
written behind, many per round trip. So a poll is one round trip and a submission two, plus two
per fault rule that matches, plus a settle when a held task is first seen ended.

Redis trouble (refused, timed out, loading) becomes ``StoreUnavailable`` (503), never a hang:
sockets time out after ``timeout`` seconds and a failed command is retried once, which also
reconnects pooled connections that a Redis restart left dead.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from . import redis_scripts as lua
from .billing import Charge, ChargeState
from .faults import FaultRule
from .redis_support import (
    CHARGE_FIELDS,
    JournalWriter,
    Snapshot,
    charge_of,
    check_url,
    counting_connection,
    glob_escape,
    guard,
    quiet_handshake,
    rule_of,
    task_of,
    text,
)
from .store import Expiry, Placed, Store, ended_at
from .tasks import Task


class RedisStore(Store):
    """The emulator's state in one Redis database, under ``prefix``."""

    def __init__(
        self,
        url: str,
        prefix: str = "emulator",
        *,
        timeout: float = 1.0,
        blob_ttl: int = 24 * 3600,
        max_blob_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.blob_ttl = blob_ttl
        self.max_blob_bytes = max_blob_bytes
        self._sent = [0]
        pool = aioredis.ConnectionPool.from_url(
            url,
            connection_class=counting_connection(self._sent),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 1),
            protocol=2,  # no HELLO, and with quiet_handshake no CLIENT SETINFO, on connect
            **quiet_handshake(),
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._p = f"{prefix}:"
        s = self._redis.register_script
        self._insert, self._replace = s(lua.INSERT), s(lua.REPLACE)
        self._count_poll, self._list = s(lua.COUNT_POLL), s(lua.LIST)
        self._advance, self._add_fault = s(lua.ADVANCE), s(lua.ADD_FAULT)
        self._list_faults, self._claim = s(lua.LIST_FAULTS), s(lua.CLAIM)
        self._journal, self._hold, self._settle = s(lua.JOURNAL), s(lua.HOLD), s(lua.SETTLE)
        self._snapshot, self._insert_held = s(lua.SNAPSHOT), s(lua.INSERT_HELD)
        self._expire = s(lua.EXPIRE)
        self._scope: ContextVar[Snapshot | None] = ContextVar(f"scope{id(self)}", default=None)
        keys = [self._k("journal"), self._k("seq", "journal")]
        self._journal_writer = JournalWriter(self._redis, self._journal, keys)

    @property
    def round_trips(self) -> int:
        """Commands, pipelines and scripts sent to Redis so far by this store."""
        return self._sent[0]

    def _k(self, *parts: str) -> str:
        return self._p + ":".join(parts)

    # -- health -------------------------------------------------------------------------
    @guard
    async def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers."""
        await self._redis.ping()

    @guard
    async def claim_id_stream(self) -> int:
        """A number no other emulator on this prefix got (0 for the first), so workers sharing
        a seed draw task ids from different streams instead of colliding."""
        return int(await self._redis.incr(self._k("streams"))) - 1

    async def close(self) -> None:
        await self._drain()
        await self._redis.aclose(close_connection_pool=True)  # the pool is ours (made above)

    # -- one snapshot per request -----------------------------------------------------------
    def request_scope(self) -> AbstractAsyncContextManager[object]:
        return self._scoped()

    @contextlib.asynccontextmanager
    async def _scoped(self) -> AsyncIterator[object]:
        token = self._scope.set(Snapshot())
        try:
            yield self
        finally:
            self._scope.reset(token)

    async def _read(
        self, scope: Snapshot, mode: str, task_id: str | None, owner: str | None = None
    ) -> Task | None:
        """One round trip: the task (``mode`` get or count, or none), rules, clock, charge."""
        tid = task_id or "-"
        keys = [self._k("task", tid), self._k("faults"), self._k("faults", "order")]
        keys += [self._k("clock"), self._k("charge", tid)]
        data, polls, clock, state, *rules = await self._snapshot(keys, [mode, owner or ""])
        scope.at = time.monotonic()
        scope.faults = [rule_of(rule) for rule in rules if rule is not None]
        scope.clock = 0.0 if clock is None else float(clock)
        if task_id is not None and data is not None:
            scope.charges[task_id] = None if state is None else text(state)
        return None if data is None else task_of(data, polls)

    def _forget(self) -> None:
        """A write to the rules or the clock: this request's snapshot no longer holds."""
        scope = self._scope.get()
        if scope is not None:
            scope.faults = None

    # -- tasks --------------------------------------------------------------------------
    @guard
    async def insert_task(self, task: Task) -> bool:
        keys = [self._k("task", task.task_id), self._k("tasks"), self._k("seq", "task")]
        args: list[str | int] = [json.dumps(task.to_dict()), task.task_id, task.polls]
        args.append(repr(ended_at(task)))
        return bool(await self._insert([*keys, self._k("ends")], args))

    @guard
    async def get_task(self, task_id: str) -> Task | None:
        scope = self._scope.get()
        if scope is not None and not scope.fresh():
            return await self._read(scope, "get", task_id)
        data, polls = await self._redis.hmget(self._k("task", task_id), ["d", "p"])
        return None if data is None else task_of(data, polls or 0)

    @guard
    async def count_poll(self, task_id: str, owner: str | None = None) -> Task | None:
        scope = self._scope.get()
        if scope is not None and not scope.fresh():
            return await self._read(scope, "count", task_id, owner)
        row = await self._count_poll([self._k("task", task_id)], [owner or ""])
        return None if row is None else task_of(row[0], row[1])

    @guard
    async def insert_held(self, task: Task, charge: Charge, blob: bytes | None) -> Placed:
        # A blob over the cap is not kept (see put_blob).
        keep = blob is not None and len(blob) <= self.max_blob_bytes
        keys = [self._k("task", task.task_id), self._k("tasks"), self._k("seq", "task")]
        keys += [self._k("balances"), self._k("charge", task.task_id), self._k("charges")]
        keys += [self._k("seq", "charge"), self._k("blob", f"ref:{task.task_id}")]
        args: list[str | int | bytes] = [json.dumps(task.to_dict()), task.task_id, task.polls]
        args += [charge.owner, charge.held, json.dumps(charge.to_dict())]
        # No TTL of its own: the picture goes when its task is removed or expires.
        args += [blob if keep and blob is not None else b"", 0, int(keep)]
        args.append(repr(ended_at(task)))
        placed: dict[int, Placed] = {1: "placed", 0: "taken", 2: "refused"}
        return placed[int(await self._insert_held([*keys, self._k("ends")], args))]

    @guard
    async def expire(self, finished_before: float, now: float, keep: int | None) -> Expiry:
        keys = [self._k("ends"), self._k("tasks")]
        args = [self._k("task", ""), self._k("blob", "ref:"), repr(finished_before), repr(now)]
        left, *flat = await self._expire(keys, [*args, "" if keep is None else keep])
        removed = [task_of(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return Expiry(removed, int(left))

    @guard
    async def replace_task(self, task: Task) -> bool:
        keys = [self._k("task", task.task_id), self._k("ends")]
        args: list[str | int] = [json.dumps(task.to_dict()), task.polls, task.task_id]
        args.append(repr(ended_at(task)))
        return bool(await self._replace(keys, args))

    @guard
    async def remove_task(self, task_id: str) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._k("task", task_id))
            pipe.zrem(self._k("tasks"), task_id)
            pipe.zrem(self._k("ends"), task_id)
            pipe.delete(self._k("blob", f"ref:{task_id}"))
            removed = (await pipe.execute())[0]
        return bool(removed)

    @guard
    async def list_tasks(self, owner: str | None = None) -> list[Task]:
        flat = await self._list([self._k("tasks")], [self._k("task", ""), "d", "p"])
        tasks = [task_of(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return [t for t in tasks if owner is None or t.owner == owner]

    @guard
    async def put_blob(self, key: str, data: bytes) -> None:
        # A blob over the cap is not kept: results then render without their reference, which
        # is better than letting one upload fill a Redis shared by every worker.
        if len(data) <= self.max_blob_bytes:
            await self._redis.set(self._k("blob", key), data, ex=self.blob_ttl)

    @guard
    async def get_blob(self, key: str) -> bytes | None:
        data = await self._redis.get(self._k("blob", key))
        return data.encode() if isinstance(data, str) else data

    # -- clock --------------------------------------------------------------------------
    @guard
    async def clock_now(self) -> float:
        scope = self._scope.get()
        if scope is not None:
            if not scope.fresh():
                await self._read(scope, "none", None)
            return scope.clock
        value = await self._redis.get(self._k("clock"))
        return 0.0 if value is None else float(value)

    @guard
    async def advance_clock(self, seconds: float) -> float:
        self._forget()
        return float(await self._advance([self._k("clock")], [repr(float(seconds))]))

    # -- fault rules --------------------------------------------------------------------
    def _fault_keys(self) -> list[str]:
        return [self._k("faults", *part) for part in ((), ("order",), ("evals",), ("hits",))]

    @guard
    async def add_fault(self, rule: FaultRule) -> None:
        self._forget()
        keys = [*self._fault_keys(), self._k("seq", "fault")]
        await self._add_fault(keys, [rule.id, json.dumps(rule.to_dict())])

    @guard
    async def list_faults(self) -> list[FaultRule]:
        scope = self._scope.get()
        if scope is not None:
            if not scope.fresh():
                await self._read(scope, "none", None)
            return list(scope.faults or ())
        rows = await self._list_faults(self._fault_keys()[:2])
        return [rule_of(row) for row in rows if row is not None]

    @guard
    async def remove_fault(self, rule_id: str) -> bool:
        self._forget()
        faults, order, evals, hits = self._fault_keys()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(faults, rule_id)
            pipe.zrem(order, rule_id)
            pipe.hdel(evals, rule_id)
            pipe.hdel(hits, rule_id)
            removed = (await pipe.execute())[0]
        return bool(removed)

    @guard
    async def clear_faults(self) -> None:
        self._forget()
        await self._redis.delete(*self._fault_keys())

    @guard
    async def count_fault_evaluation(self, rule_id: str) -> int:
        return int(await self._redis.hincrby(self._k("faults", "evals"), rule_id, 1))

    @guard
    async def claim_fault(self, rule_id: str, times: int | None) -> bool:
        args = [rule_id, "" if times is None else str(times)]
        return bool(await self._claim([self._k("faults", "hits")], args))

    @guard
    async def fault_hits(self) -> dict[str, int]:
        raw = await self._redis.hgetall(self._k("faults", "hits"))
        return {text(k): int(v) for k, v in raw.items()}

    # -- journal ------------------------------------------------------------------------
    @guard
    async def append_journal(self, entry: dict[str, Any], limit: int) -> int:
        keys = [self._k("journal"), self._k("seq", "journal")]
        return int(await self._journal(keys, [json.dumps(entry), limit]))

    async def log_request(self, entry: dict[str, Any], limit: int) -> None:
        self._journal_writer.add(json.dumps(entry), limit)

    async def _drain(self) -> None:
        await self._journal_writer.drain()

    @property
    def journal_dropped(self) -> int:
        """Journal entries lost to a Redis outage or an overflowing backlog."""
        return self._journal_writer.dropped

    @guard
    async def list_journal(self) -> list[dict[str, Any]]:
        await self._drain()
        entries = []
        for raw in await self._redis.lrange(self._k("journal"), 0, -1):
            seq, _, data = text(raw).partition("\n")
            entries.append(json.loads(data) | {"seq": int(seq)})
        return entries

    @guard
    async def clear_journal(self) -> None:
        await self._drain()
        await self._redis.delete(self._k("journal"))

    # -- billing ------------------------------------------------------------------------
    @guard
    async def hold(self, charge: Charge) -> bool:
        keys = [
            self._k("balances"),
            self._k("charge", charge.task_id),
            self._k("charges"),
            self._k("seq", "charge"),
        ]
        args: list[str | int] = [
            charge.owner,
            charge.held,
            json.dumps(charge.to_dict()),
            charge.task_id,
        ]
        return bool(await self._hold(keys, args))

    @guard
    async def settle(
        self, task_id: str, state: ChargeState, images: int, amount: int, settled_at: float
    ) -> bool:
        scope = self._scope.get()
        if scope is not None and task_id in scope.charges and scope.charges[task_id] != "held":
            return False  # not held when this request read it, and a charge never is again
        keys = [self._k("charge", task_id), self._k("balances")]
        return bool(await self._settle(keys, [state, images, amount, repr(float(settled_at))]))

    @guard
    async def list_charges(self, owner: str | None = None) -> list[Charge]:
        flat = await self._list([self._k("charges")], [self._k("charge", ""), *CHARGE_FIELDS])
        width = len(CHARGE_FIELDS)
        charges = [charge_of(flat[i : i + width]) for i in range(0, len(flat), width)]
        return [c for c in charges if owner is None or c.owner == owner]

    @guard
    async def set_balance(self, owner: str, label: str, amount: int | None) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            if amount is None:
                pipe.hdel(self._k("balances"), owner)
                pipe.hdel(self._k("balances", "labels"), owner)
            else:
                pipe.hset(self._k("balances"), owner, amount)
                pipe.hset(self._k("balances", "labels"), owner, label)
            await pipe.execute()

    @guard
    async def list_balances(self) -> dict[str, tuple[str, int]]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._k("balances"))
            pipe.hgetall(self._k("balances", "labels"))
            amounts, labels = await pipe.execute()
        return {
            text(owner): (text(labels.get(owner, b"")), int(amount))
            for owner, amount in amounts.items()
        }

    # -- reset --------------------------------------------------------------------------
    @guard
    async def reset(self) -> None:
        # Only this prefix: other emulators may share the database. The id-stream counter
        # stays so workers that keep running never get a stream another worker has.
        self._forget()
        await self._drain()
        keep = self._k("streams").encode()
        pattern = glob_escape(self._p) + "*"
        doomed = [k async for k in self._redis.scan_iter(match=pattern, count=1000) if k != keep]
        for i in range(0, len(doomed), 500):
            await self._redis.unlink(*doomed[i : i + 500])


__all__ = ["RedisStore", "check_url"]
