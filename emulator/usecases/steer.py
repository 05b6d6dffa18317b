"""The control plane's operations, one implementation for every way in: the HTTP control plane
(``emulator.http.admin``), the dashboard (``emulator.http.ui``) and the pytest fixture's handle
(``emulator.testing.handle``) all call these.

Each checks its arguments (an `EmulatorError` whose message names the argument and the rule;
those about an argument's value are also ValueErrors, for the fixture's callers) and returns
plain data: the views the control plane shows. How an argument is read (JSON, a form, a
keyword) and worded is the caller's. The fault rules' operations are their own concept
(``fault_rules``), reached as `Steering.fault_rules`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..config import FIXED_SETTINGS, ConfigError, Settings
from ..core.checks import MAX_CODE_CHARS, MAX_MESSAGE_CHARS, shown, text_problem
from ..core.clock import Clock, ManualClock
from ..core.journal import JournalQuery
from ..core.tasks import Outcome, Task, ended_at, observe
from ..core.tasks import elapsed as task_elapsed
from ..errors import EmulatorError, InvalidRequest, TaskNotFound
from ..stores import Store
from .configuration import Configuration
from .fault_rules import FaultGone, FaultRules
from .journal import JournalKeeper, check_whole, journal_page, newest_entries, whole_journal
from .pages import MAX_PAGE, gone, next_cursor, page_request, walk
from .poll import Tasks
from .results import Results
from .settle import Billing, balance_problem, key_problem
from .startup import Startup

MAX_ADVANCE = 10**9
#: What a forced failure says when ``code`` / ``message`` are left out (or null).
_DEFAULTS = {
    "code": "leave it out (or null) for upstream_error",
    "message": "leave it out (or null) for 'the upstream model failed (<code>)'",
}


class ArgumentError(InvalidRequest, ValueError):
    """A control-plane argument breaks a rule; the message names the argument."""


class Steering:
    """What the control plane does to one emulator."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: Configuration,
        *,
        tasks: Tasks,
        billing: Billing,
        results: Results,
        startup: Startup,
        apply: Callable[[Settings], None],
        reset: Callable[[], Awaitable[None]],
        fault_rules: FaultRules,
        journal: JournalKeeper | None = None,
    ) -> None:
        self._store, self._clock, self._config = store, clock, config
        #: Installing, listing and removing fault rules, and reading their hits.
        self.fault_rules = fault_rules
        #: Its count of requests not journaled (None: no keeper, nothing counted).
        self._keeper = journal
        self._tasks, self.billing, self._results = tasks, billing, results
        self._startup, self._apply, self._reset = startup, apply, reset

    # -- time ------------------------------------------------------------------------------
    async def now(self) -> float:
        return await self._clock.now()

    def manual_clock(self) -> ManualClock:
        """The manual clock, or 409 ``clock_not_manual``: only it can be advanced."""
        clock = self._clock
        if not isinstance(clock, ManualClock):
            raise EmulatorError(
                f"the clock is {self._config.settings.clock!r}; only the manual clock can be "
                "advanced",
                status_code=409,
                code="clock_not_manual",
            )
        return clock

    async def advance(self, seconds: object) -> float:
        """Move the manual clock forward by ``seconds``; the new virtual time."""
        clock = self.manual_clock()
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or not 0 <= seconds <= MAX_ADVANCE
        ):
            raise ArgumentError(
                f"seconds must be a number between 0 and 1e9, got {shown(seconds, 40)}",
                field="seconds",
            )
        await self._startup.ensure()
        return await clock.advance(float(seconds))

    # -- tasks -----------------------------------------------------------------------------
    async def view(self, task: Task, base_url: str) -> dict[str, Any]:
        """A task as ``GET /_emulator/tasks/{id}`` shows it."""
        return self._view_at(task, base_url, await self._clock.now())

    def _view_at(self, task: Task, base_url: str, now: float) -> dict[str, Any]:
        """``view`` at the clock time ``now`` (one read of the clock serves a whole page: on
        Redis each read is a round trip). A task of the per_poll clock moves by its polls
        (``task_elapsed`` then ignores ``now``)."""
        elapsed = task_elapsed(task, now)
        obs = observe(task.schedule, elapsed)
        urls = self._results.urls(task, base_url) if obs.status == "succeeded" else []
        ended = obs.status in ("succeeded", "failed")  # the time clocks store no end: derive it
        return {
            "task": task.to_dict() | ({"finished_at": ended_at(task)} if ended else {}),
            "status": obs.status,
            "progress": f"{obs.progress}%",
            "elapsed": elapsed,
            "result_urls": urls,
        }

    async def find(self, task_id: str) -> Task:
        """The task (any owner's), or TaskNotFound."""
        return await self._tasks.find(None, task_id)

    async def task_view(self, task_id: str, base_url: str) -> dict[str, Any]:
        return await self.view(await self.find(task_id), base_url)

    async def tasks(
        self, base_url: str, *, status: str | None = None, model: str | None = None
    ) -> list[dict[str, Any]]:
        """Every task that has not expired (as the task route says), in submission order;
        only those of ``model`` and ``status`` when given. Read page by page (`tasks_page`);
        tasks removed or reset between two pages do not stop the walk, but CursorGone if the
        store's numbering started again between them (the walk would skip tasks): never a
        partial list."""

        async def read(after: str | None) -> tuple[list[dict[str, Any]], str | None]:
            return await self.tasks_page(base_url, status=status, model=model, after=after)

        return await walk(read, "the task", "tasks")

    async def tasks_page(
        self,
        base_url: str,
        *,
        status: str | None = None,
        model: str | None = None,
        limit: object = MAX_PAGE,
        after: object = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of `tasks`: the views of the tasks that match among at most ``limit``
        stored tasks (1 to `MAX_PAGE`) after the cursor ``after`` (None: from the first), and
        the cursor of the next page (None: none follows). A page may hold fewer matches than
        ``limit``, even none, while more remain: its cost is ``limit`` tasks, whatever the
        filters match. The page goes on after ``after``'s task whether or not it is still
        stored; CursorGone when ``after`` is of another numbering (it started again)."""
        count, position = page_request(limit, after)
        await self._startup.ensure()
        page = await self._store.task_page(position, count)
        if page is None:
            raise gone(str(after))
        now = await self._clock.now()
        views = []
        for task in page.tasks:
            if (model and task.model != model) or await self._tasks.is_expired(task, now):
                continue
            view = self._view_at(task, base_url, now)
            if not status or view["status"] == status:
                views.append(view)
        return views, next_cursor(page.more, page.last)

    async def end_task(
        self,
        task_id: str,
        outcome: str,
        base_url: str,
        code: object = None,
        message: object = None,
    ) -> dict[str, Any]:
        """End a running task now (409 if it already ended: terminal states are final); its
        view. ``code`` and ``message`` say why a failed one failed."""
        if not isinstance(task_id, str):
            raise ArgumentError(
                f"task_id must be a string, got {shown(task_id, 40)}", field="task_id"
            )
        texts = {"code": (code, MAX_CODE_CHARS), "message": (message, MAX_MESSAGE_CHARS)}
        for name, (value, limit) in texts.items():
            if value is None:
                continue
            if not isinstance(value, str):
                raise ArgumentError(f"{name} must be a string, got {shown(value, 40)}", field=name)
            problem = text_problem(value, limit)
            if problem is not None:
                raise ArgumentError(f"{name} {problem}", field=name)
            if not value:  # else "" would quietly become the default (an empty error is not)
                raise ArgumentError(f"{name} must not be empty; {_DEFAULTS[name]}", field=name)
        await self._startup.ensure()
        ended = "succeeded" if outcome == "succeeded" else "failed"
        task = await self.force_outcome(task_id, ended, code, message)  # type: ignore[arg-type]
        return await self.view(task, base_url)

    async def force_outcome(
        self, task_id: str, outcome: Outcome, code: str | None, message: str | None
    ) -> Task:
        """End a running task now with ``outcome``; a task that already ended cannot change.

        The store checks "not ended" and writes in one step, so a poll or a clock move that
        lands meanwhile (on this worker or another) cannot be overwritten or reversed.
        """
        task = await self._tasks.find(None, task_id)
        now = await self._clock.now()
        elapsed = task_elapsed(task, now)
        ended = EmulatorError(
            f"task {shown(task_id)} has already ended; terminal states are final",
            status_code=409,
            code="task_already_ended",
        )
        if observe(task.schedule, elapsed).terminal:
            raise ended
        if outcome == "failed":
            code = code or "upstream_error"
            message = message or f"the upstream model failed ({code})"
        else:
            code = message = None
        forced = dataclasses.replace(
            task,
            schedule=task.schedule.ending_now(elapsed, outcome, code, message),
            finished_at=now if task.schedule.steps is not None else None,
        )
        result = await self._store.force_end(forced, self._tasks.step_now(now))
        if result == "ended":
            raise ended
        if result == "missing":
            raise TaskNotFound(f"task {shown(task_id)} does not exist")
        return result

    async def run_until_settled(self, base_url: str, max_steps: int) -> list[dict[str, Any]]:
        """Advance the manual clock until every task has ended; the tasks' final views."""
        for _ in range(max_steps):
            views = await self.tasks(base_url)
            pending = [v for v in views if v["status"] not in ("succeeded", "failed")]
            if not pending:
                return views
            schedules = [v["task"]["schedule"] for v in pending]
            remaining = max(
                s["queued_s"] + s["processing_s"] - v["elapsed"]
                for s, v in zip(schedules, pending, strict=True)
            )
            await self.advance(max(remaining, 0.001))
        raise AssertionError(f"tasks still running after {max_steps} clock steps")

    # -- journal, usage, balances ----------------------------------------------------------
    async def journal(self, query: JournalQuery, *, whole: bool = False) -> list[dict[str, Any]]:
        """Every kept journal entry matching ``query``, oldest first, page by page (build
        ``query`` before: a bad filter never reads); `journal.whole_journal`. ``whole``:
        JournalIncomplete (naming ``journal_limit``) rather than a list that misses entries
        since the last reset or clear (`journal.check_whole`)."""
        entries, dropped = await whole_journal(self._store, query)
        if whole:
            keeper = self._keeper
            unrecorded = 0 if keeper is None else keeper.unrecorded
            lost = self._store.journal_lost() if keeper is None else keeper.lost()
            check_whole(self._config.settings.journal_limit, dropped, unrecorded, lost)
        return entries

    def journal_missing(self) -> int:
        """Requests of this process since the last reset or clear that the journal holds no
        entry of, kept or dropped (`JournalKeeper.missing`)."""
        if self._keeper is None:
            return self._store.journal_lost()
        return self._keeper.missing()

    async def journal_page(
        self, query: JournalQuery, *, limit: object = MAX_PAGE, after: object = None
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        """One page of `journal`, the next page's cursor and the entries the bound dropped
        before the page (`journal.journal_page`)."""
        return await journal_page(self._store, query, limit, after)

    async def journal_newest(
        self, query: JournalQuery, count: int = MAX_PAGE
    ) -> list[dict[str, Any]]:
        """The entries matching ``query`` among the newest ``count`` kept (the dashboard's
        bounded view), oldest first."""
        return await newest_entries(self._store, query, count)

    async def clear_journal(self) -> None:
        """Forget the journal's entries; what this process counted missing goes with them
        (a new window: `journal_missing` counts from here)."""
        await self._store.clear_journal()
        if self._keeper is not None:
            self._keeper.forget()

    async def set_balance(self, key: object, amount: object, name: str = "amount") -> None:
        """Give ``key`` a balance in credits (None: unlimited); ``name`` is what the caller
        calls the amount, in a refusal's message."""
        problem = key_problem(key)
        if problem is not None:
            raise ArgumentError(f"key {problem}", field="key")
        problem = balance_problem(amount)
        if problem is not None:
            none = "null" if name == "balance" else "None"
            raise ArgumentError(f"{name} {problem}, or {none} for unlimited", field=name)
        await self.billing.set_balance(key, amount)  # type: ignore[arg-type]

    # -- settings and state ----------------------------------------------------------------
    async def configure(self, changes: Mapping[str, Any], remedy: str) -> Settings:
        """Change settings that may change while serving; the new settings. A fixed one is
        refused naming it, and ``remedy`` (how to set it instead; ``{name}`` is its name)."""
        fixed = sorted(set(changes) & FIXED_SETTINGS)
        if fixed:
            name = fixed[0]
            raise ConfigError(
                f"setting {name!r} cannot change while serving; {remedy.format(name=name)}",
                field=name,
            )
        return await self.restore(self._config.settings.replace(**changes))

    async def restore(self, settings: Settings) -> Settings:
        """Put ``settings`` in force (every table checked before any is swapped in)."""
        try:
            self._apply(settings)
        except (ValueError, OSError) as exc:  # ConfigError is a ValueError; OSError: a file
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(str(exc)) from None
        return settings

    async def reset(self) -> None:
        """Forget tasks, journal, added faults, hits, balances, usage; the clock back to 0."""
        await self._reset()


# FaultGone moved to ``fault_rules`` with the rules' operations; it stays importable from here,
# where docs/pytest.md names it for the fixture's users.
__all__ = ["MAX_ADVANCE", "ArgumentError", "FaultGone", "Steering"]
