"""State in Redis, so several worker processes (and hosts) serve one emulator.

Every key starts with ``<prefix>:``; ``reset`` deletes only those. Each store operation is one
round trip: a single command, or a Lua script (``redis_scripts``) where a decision depends on
what is stored (a fault's hit budget, a balance, the cap, a task id already taken). Redis runs
a script alone, so those decisions are atomic across every worker without locks.

The keys (all under the prefix) and what each hash holds are listed in ``redis_scripts``.

What a request costs (``round_trips`` counts): inside ``request_scope`` the first read of the
task, the rules or the clock fetches all of them and the task's charge state in one script, and
later reads in the request use that snapshot (for at most ``SNAPSHOT_SECONDS``). A submission
writes task, hold, reference picture and the cap's evictions in one script. Journal entries
are written behind, many per round trip. So a poll is one round trip and a submission two,
plus two per fault rule that matches, plus a settle when a held task is first seen ended.

Redis trouble (refused, timed out, loading) becomes ``StoreUnavailable`` (503), never a hang:
sockets time out after ``timeout`` seconds. A read is tried once more; a write never is, and
carries a deadline so that Redis running it late (after a stall) does nothing (``guard``).
"""

from __future__ import annotations

import json
import math
import time
from contextvars import ContextVar
from typing import Any

import redis.asyncio as aioredis

from ...core.billing import Charge
from ...core.tasks import Task, ended_at, images_returned
from ..base import EVICT_AT_MOST, Expiry, Forced, Now, Placed, Store
from ..pages import JournalPage, Position, TaskPage, listed_at_most, new_epoch, paged
from . import scripts as lua
from .faults import ADD_FAULT, CLAIM, COUNT_EVALUATION, LIST_FAULTS, REMOVE_FAULT, FaultRules
from .journal import CLEAR_JOURNAL, JOURNAL, JOURNAL_PAGE, journal_keys, journal_page
from .ledger import Ledger
from .support import (
    JournalWriter,
    RequestScope,
    Scripts,
    Snapshot,
    check_url,
    connection_pool,
    deadline,
    glob_escape,
    guard,
    guard_read,
)
from .values import (
    TaskReader,
    end_poll,
    journal_of,
    number,
    rule_of,
    task_of,
    tasks_of,
    text,
)

_PLACED: dict[int, Placed] = {1: "placed", 0: "taken", 2: "refused", 3: "full"}


class RedisStore(Ledger, FaultRules, Store):
    """The emulator's state in one Redis database, under ``prefix``."""

    def __init__(
        self,
        url: str,
        prefix: str = "emulator",
        *,
        timeout: float = 1.0,
        blob_ttl: int = 24 * 3600,
        max_blob_bytes: int = 8 * 1024 * 1024,
        evict_at_most: int = EVICT_AT_MOST,
    ) -> None:
        super().__init__(evict_at_most=evict_at_most)  # checked before the pool is made
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.blob_ttl = blob_ttl
        self.max_blob_bytes = max_blob_bytes
        self._sent = [0]
        self._redis = aioredis.Redis(connection_pool=connection_pool(url, timeout, self._sent))
        self._p = f"{prefix}:"
        self._scripts = Scripts(self._redis, timeout)
        self._task_of = TaskReader()
        s = self._scripts.register
        self._insert_held, self._snapshot = s(lua.INSERT_HELD), s(lua.SNAPSHOT)
        self._force, self._expire = s(lua.FORCE), s(lua.EXPIRE)
        self._settle, self._settle_due = s(lua.SETTLE), s(lua.SETTLE_DUE)
        self._set_balance, self._advance = s(lua.SET_BALANCE), s(lua.ADVANCE)
        self._list, self._page, self._usage_sums = s(lua.LIST), s(lua.PAGE), s(lua.USAGE_SUMS)
        self._add_fault, self._remove_fault = s(ADD_FAULT), s(REMOVE_FAULT)
        self._count_evaluation, self._claim = s(COUNT_EVALUATION), s(CLAIM)
        self._list_faults = s(LIST_FAULTS)
        self._scope: ContextVar[Snapshot | None] = ContextVar(f"scope{id(self)}", default=None)
        self.request_scope = self._scoped
        self._journal_keys = journal_keys(self._p)
        self._journal_writer = JournalWriter(s(JOURNAL), self._journal_keys[:2])
        self._journal_page, self._clear_journal = s(JOURNAL_PAGE), s(CLEAR_JOURNAL)

    @property
    def round_trips(self) -> int:
        """Commands, pipelines and scripts sent to Redis so far by this store."""
        return self._sent[0]

    def _k(self, *parts: str) -> str:
        return self._p + ":".join(parts)

    def _args(self, now: Now = None, *, write: bool = True) -> list[Any]:
        """The arguments every script of ``redis_scripts`` starts with."""
        limit = self.usage_log_limit
        return [
            self._p,
            deadline(self.timeout) if write else "",
            number(now),
            "" if limit is None else limit,
        ]

    # -- health -------------------------------------------------------------------------
    @guard_read
    async def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers."""
        await self._redis.ping()

    @guard
    async def claim_id_stream(self) -> int:
        """A number no other emulator on this prefix got (0 for the first), so workers sharing
        a seed draw task ids from different streams instead of colliding. (A late INCR only
        skips a number.)"""
        return int(await self._redis.incr(self._k("streams"))) - 1

    async def close(self) -> None:
        await self._drain()
        await self._scripts.close()
        await self._redis.aclose(close_connection_pool=True)  # the pool is ours (made above)

    # -- one snapshot per request (Store.request_scope, set in __init__) -----------------------
    def _scoped(self) -> RequestScope:
        return RequestScope(self._scope)

    async def _read(
        self,
        scope: Snapshot,
        mode: str,
        task_id: str | None,
        owner: str | None = None,
        now: float | None = None,
    ) -> Task | None:
        """One round trip: the task (``mode`` get, or count a poll: a write), rules, clock,
        charge."""
        args = self._args(now, write=mode == "count")
        args += [mode, task_id or "", owner or ""]
        data, polls, end, forced, clock, state, *rules = await self._snapshot([], args)
        scope.at = time.monotonic()
        scope.faults = [rule_of(rule) for rule in rules if rule is not None]
        scope.clock = 0.0 if clock is None else float(clock)
        if task_id is not None and data is not None:
            scope.charges[task_id] = None if state is None else text(state)
        return None if data is None else self._task_of(data, polls, end, forced)

    def _forget(self) -> None:
        """A write to the rules or the clock: this request's snapshot no longer holds."""
        scope = self._scope.get()
        if scope is not None:
            scope.faults = None

    def _scoped_snapshot(self) -> Snapshot:
        """This request's snapshot, or a throwaway one outside a request."""
        return self._scope.get() or Snapshot()

    # -- tasks and their charges --------------------------------------------------------------
    @guard
    async def insert_held(
        self, task: Task, charge: Charge, blob: bytes | None, *, cap: int, now: Now
    ) -> Placed:
        # A blob over the cap is not kept (see put_blob).
        keep = blob is not None and len(blob) <= self.max_blob_bytes
        data = task.to_dict()
        del data["polls"], data["finished_at"]
        end = ended_at(task)
        args = self._args(now)
        args += [task.task_id, json.dumps(data), task.owner, repr(task.created_at)]
        args += [repr(task.schedule.ends_at), end_poll(task)]
        args += [number(None if end == math.inf else end), images_returned(task)]
        args += [json.dumps(charge.to_dict()), charge.held, charge.unit_price, charge.key]
        args += [charge.model, blob if keep and blob is not None else b"", int(keep), cap]
        args.append(self.evict_at_most)
        return _PLACED[int(await self._insert_held([], args))]

    @guard_read
    async def get_task(self, task_id: str) -> Task | None:
        scope = self._scope.get()
        if scope is not None and not scope.fresh():
            return await self._read(scope, "get", task_id)
        data, polls, end, forced = await self._redis.hmget(
            self._k("task", task_id), ["d", "p", "e", "f"]
        )
        return None if data is None else self._task_of(data, polls or 0, end, forced)

    @guard
    async def count_poll(
        self, task_id: str, owner: str | None = None, now: float | None = None
    ) -> Task | None:
        return await self._read(self._scoped_snapshot(), "count", task_id, owner, now)

    @guard
    async def force_end(self, task: Task, now: Now) -> Forced:
        end = ended_at(task)
        args = [*self._args(now), task.task_id, json.dumps(task.to_dict()["schedule"])]
        args += [repr(task.schedule.ends_at), end_poll(task), images_returned(task)]
        args.append(number(end))
        found = await self._force([], args)
        if found in (0, 2):
            return "missing" if found == 0 else "ended"
        return task_of(*found)

    @guard_read
    async def list_tasks(
        self, owner: str | None = None, *, newest: int | None = None
    ) -> list[Task]:
        if listed_at_most(newest) == 0:
            return []
        # Only the newest are read when no owner is asked for; one owner's (the owner is in
        # the task's JSON) are found among all.
        first = -newest if newest is not None and owner is None else 0
        fields = [self._k("task", ""), str(first), "d", "p", "e", "f"]
        flat = await self._list([self._k("tasks")], fields)
        tasks = tasks_of(flat)
        kept = [t for t in tasks if owner is None or t.owner == owner]
        return kept if newest is None else kept[-newest:]

    @guard_read
    async def task_page(self, after: Position | None, count: int) -> TaskPage | None:
        after, count = paged(after, count)
        # A position is a score in P:tasks (ZRANGEBYSCORE above it: a page costs its own
        # members, however many are stored) and the epoch in P:epoch, checked in the script.
        args = [self._k("task", ""), "", "", count, new_epoch(), "d", "p", "e", "f"]
        if after is not None:
            args[1:3] = [str(after[0]), after[1]]
        found = await self._page([self._k("tasks"), self._k("epoch")], args)
        if found == 0:
            return None
        more, number, epoch, *flat = found
        tasks = [task_of(*flat[i : i + 4]) for i in range(0, len(flat), 4)]
        position = (int(float(number)), text(epoch)) if number else None
        return TaskPage(tasks, position, bool(int(more)))

    @guard_read
    async def count_tasks(self) -> int:
        return int(await self._redis.zcard(self._k("tasks")))

    @guard
    async def expire(self, finished_before: float, now: Now) -> Expiry:
        removed, left = await self._expire([], [*self._args(now), number(finished_before)])
        return Expiry(int(removed), int(left))

    @guard
    async def put_blob(self, key: str, data: bytes) -> None:
        # A blob over the cap is not kept: results then render without their reference, which
        # is better than letting one upload fill a Redis shared by every worker. (Idempotent.)
        if len(data) <= self.max_blob_bytes:
            await self._redis.set(self._k("blob", key), data, ex=self.blob_ttl)

    @guard_read
    async def get_blob(self, key: str) -> bytes | None:
        data = await self._redis.get(self._k("blob", key))
        return data.encode() if isinstance(data, str) else data

    # -- clock --------------------------------------------------------------------------
    @guard_read
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
        return float(await self._advance([], [*self._args(), repr(float(seconds))]))

    @guard
    async def claim_clock(self, mode: str) -> str:
        # SET NX, then read what is kept, in one MULTI: workers racing at start all read the
        # mode of the first SET. No deadline: run late, it keeps only the mode its caller
        # asked for, as the caller's next try would.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._k("clock_mode"), mode, nx=True)
            pipe.get(self._k("clock_mode"))
            _, kept = await pipe.execute()
        return text(kept)

    # -- journal ------------------------------------------------------------------------
    async def append_journal(self, entry: dict[str, Any], limit: int) -> None:
        # Written behind (JournalWriter): never raises, many entries per round trip.
        self._journal_writer.add(json.dumps(entry), limit)

    async def _drain(self) -> None:
        await self._journal_writer.drain()

    @guard_read
    async def journal_page(self, after: Position | None, count: int) -> JournalPage | None:
        after, count = paged(after, count)
        await self._drain()  # this worker's queued entries first (Store.journal_page)
        return await journal_page(self._journal_page, self._journal_keys, after, count)

    @guard_read
    async def journal_tail(self, count: int) -> list[dict[str, Any]]:
        count = paged(None, count)[1]
        await self._drain()
        return journal_of(await self._redis.lrange(self._k("journal"), -count, -1))

    @guard
    async def clear_journal(self, *, mark: bool = True) -> None:
        await self._drain()
        # Losses up to here are cleared with the entries; those while the script is on its
        # way may be either side of it, so they stay counted (never a loss hidden).
        lost = self._journal_writer.lost
        keys = self._journal_keys[:2] + self._journal_keys[3:]
        await self._clear_journal(keys, ["1" if mark else "0"])
        if mark:
            self._journal_writer.lost -= lost

    def journal_lost(self) -> int:
        return self._journal_writer.lost

    # -- reset --------------------------------------------------------------------------
    @guard
    async def reset(self) -> None:
        # Only this prefix: other emulators may share the database. The id-stream counter
        # stays so workers that keep running never get a stream another worker has. Not one
        # step (a scan): a reset answered 503 may be half done; repeating it finishes it.
        self._forget()
        await self._drain()
        # The task numbering stays too, epoch and all: a listing's cursor from before goes on
        # with the tasks stored after (their numbers rose).
        # So do the charges' numbering and the mark that the usage sums are kept (they are
        # deleted with the charges: both start again empty).
        # And the clock mode: the workers on the prefix still run on it (`claim_clock`).
        numbering = ("streams", "seq:task", "seq:charge", "epoch", "charges:epoch")
        kept = (*numbering, "usage:ready", "clock_mode")
        keep = {self._k(k).encode() for k in kept}
        # The journal, its counter and its epoch in one command: its numbering never starts
        # again under the epoch a cursor has (the scan, batch by batch, could part them).
        lost = self._journal_writer.lost  # as in clear_journal: lost before, gone with it
        await self._redis.unlink(*self._journal_keys)
        self._journal_writer.lost -= lost
        keep |= {k.encode() for k in self._journal_keys}
        pattern = glob_escape(self._p) + "*"
        doomed = [
            k async for k in self._redis.scan_iter(match=pattern, count=1000) if k not in keep
        ]
        for i in range(0, len(doomed), 500):
            await self._redis.unlink(*doomed[i : i + 500])


__all__ = ["RedisStore", "check_url"]
