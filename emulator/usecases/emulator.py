"""The emulator: its state and its operations, independent of HTTP (``emulator.http.app``
serves them).

Nothing here is module-level state: two emulators in one process never share anything.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import random
import re
import secrets
from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, Settings, checked, load_fault_file
from ..core.billing import Charge, PriceTable, matching, totals
from ..core.catalogue import Catalogue
from ..core.clock import Clock, ManualClock, WallClock
from ..core.faults import FaultRule, RequestFacts, fires, matches
from ..core.journal import mask_key
from ..core.tasks import QUEUED, Observation, Outcome, Schedule, Task, ended_at, fate, observe
from ..core.tasks import elapsed as task_elapsed
from ..core.timing import Timing
from ..errors import EmulatorError, InsufficientQuota, RateLimited, TaskNotFound
from ..stores.base import Now, Store
from ..stores.factory import open_store
from .results import Results
from .submission import Submission
from .sweep import Sweeper, is_expired

TASK_ID_RE = re.compile(r"^task_[0-9a-f]{32}$")


@functools.lru_cache(maxsize=1024)
def key_fingerprint(api_key: str) -> str:
    """A stable, non-reversible name for an API key (tasks are owned by it, never by the key).

    Remembered: a hash per request is a measurable share of a poll, and every task of a key
    then shares one owner string.
    """
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:24]


@functools.lru_cache(maxsize=16)
def _packaged_tables(
    enabled_models: tuple[str, ...] | None, nano_max_n: int
) -> tuple[Catalogue, Timing, PriceTable]:
    """The packaged data tables, parsed once per process: they never change while it runs and
    the tables are frozen, and parsing three TOML files was most of an emulator's creation
    (the pytest fixture makes one per test)."""
    catalogue = Catalogue.load(enabled_models=enabled_models, nano_max_n=nano_max_n)
    return catalogue, Timing.load(), PriceTable.load(None, catalogue)


class Emulator:
    """One emulator's state and operations, independent of HTTP."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings = checked(settings)
        if settings.catalogue_file is settings.timing_file is settings.price_file is None:
            models = None if settings.enabled_models is None else tuple(settings.enabled_models)
            self.catalogue, self.timing, self.prices = _packaged_tables(models, settings.nano_max_n)
        else:
            self.catalogue = Catalogue.load(
                settings.catalogue_file,
                enabled_models=settings.enabled_models,
                nano_max_n=settings.nano_max_n,
            )
            self.timing = Timing.load(settings.timing_file)
            self.prices = PriceTable.load(settings.price_file, self.catalogue)
        try:
            self.store = store or open_store(settings.store_url, prefix=settings.store_prefix)
        except ValueError as exc:
            raise ConfigError(f"setting 'store': {exc}") from None
        self.store.usage_log_limit = settings.usage_log_limit
        self.clock: Clock = ManualClock(self.store) if settings.clock == "manual" else WallClock()
        self.seed = settings.seed if settings.seed is not None else secrets.randbits(63)
        #: Task ids come from stream 0 of the seed unless the store is shared (see start).
        self._id_stream: int | None = None
        self._ids = self._id_rng()
        #: Result images: their URLs, their bytes, the render cache (emulator/results.py).
        self.results = Results(self)
        self._configured_faults = settings.faults + (
            load_fault_file(settings.fault_file) if settings.fault_file else ()
        )
        self._started = False
        #: Expires finished tasks and keeps the store within max_tasks (emulator/expiry.py).
        self.sweeper = Sweeper()

    async def start(self) -> None:
        """Install the configured fault rules once (lazily: in-process transports skip lifespan)."""
        if not self._started:
            self._started = True
            if self._id_stream is None:
                # Processes sharing a store and a seed would draw the same ids: each takes a
                # stream of its own. The first (or only) one gets 0, the plain seeded sequence.
                self._id_stream = await self.store.claim_id_stream()
                self._ids = self._id_rng()
            installed = {rule.id: rule for rule in await self.store.list_faults()}
            for rule in self._configured_faults:
                # Another worker may have installed it already and counted hits: keep them.
                if installed.get(rule.id) != rule:
                    await self.store.add_fault(rule)

    def _id_rng(self) -> random.Random:
        stream = self._id_stream or 0
        return random.Random(self.seed if stream == 0 else f"{self.seed}:ids:{stream}")

    def reconfigure(self, settings: Settings) -> None:
        """Apply changed settings at run time (from ``PATCH /_emulator/config``).

        Every table is built and checked against the others before any is swapped in, so a
        refused change (ValueError, OSError) leaves the emulator as it was.
        """
        catalogue, timing = self.catalogue, self.timing
        if (settings.catalogue_file, settings.enabled_models, settings.nano_max_n) != (
            self.settings.catalogue_file,
            self.settings.enabled_models,
            self.settings.nano_max_n,
        ):
            catalogue = Catalogue.load(
                settings.catalogue_file,
                enabled_models=settings.enabled_models,
                nano_max_n=settings.nano_max_n,
            )
        if settings.timing_file != self.settings.timing_file:
            timing = Timing.load(settings.timing_file)
        # The prices must cover the (possibly new) catalogue, or its new models would 500.
        prices = PriceTable.load(settings.price_file, catalogue)
        self.catalogue, self.timing, self.prices = catalogue, timing, prices
        self.settings = settings
        self.store.usage_log_limit = settings.usage_log_limit

    # -- faults ------------------------------------------------------------------------
    async def pick_fault(self, facts: RequestFacts) -> FaultRule | None:
        """The first rule that matches ``facts``, fires under the seed and has hits left."""
        await self.start()
        for rule in await self.store.list_faults():
            if not matches(rule, facts):
                continue
            evaluation = await self.store.count_fault_evaluation(rule.id)
            if fires(self.seed, rule, evaluation) and await self.store.claim_fault(
                rule.id, rule.times
            ):
                return rule
        return None

    # -- tasks -------------------------------------------------------------------------
    async def submit(
        self,
        api_key: str,
        submission: Submission,
        base_url: str,
        fault: FaultRule | None = None,
    ) -> Task:
        """Accept a checked submission: draw its schedule, store it under a fresh id, and hold
        its cost (403 insufficient_quota, and no task, when the key's balance cannot cover it).

        ``fault`` (a fail_task or partial rule) decides the task's fate instead of the odds.
        """
        owner = key_fingerprint(api_key)
        plan = submission.plan
        picture = submission.picture
        if picture is None and submission.urls:
            picture = await self.results.own_picture(submission.urls, base_url)
        if picture is None and submission.urls and self.settings.fetch_reference_urls:
            # opt-in: its HTTP client is not loaded otherwise
            from ..pictures.fetcher import Fences, fetch_picture

            settings = self.settings
            fences = Fences(
                settings.fetch_allow_hosts,
                settings.fetch_allow_private,
                settings.fetch_timeout,
                settings.fetch_max_bytes,
                settings.max_reference_pixels,
            )
            picture = await fetch_picture(submission.urls[0], "image", fences)
        await self.start()  # the id stream is claimed before the first id is drawn
        now = await self.clock.now()
        await self.sweeper.before_submit(self, now)
        # What shapes the task's life is fixed in it now: later settings apply to new tasks.
        steps = self.settings.per_poll_steps if self.settings.clock == "per_poll" else None
        while True:
            task_id = f"task_{self._ids.getrandbits(128):032x}"
            rng = random.Random(f"{self.seed}:{task_id}")
            queued_s, processing_s = self.timing.draw(
                rng, plan.model, plan.tier, plan.quality, self.settings.time_scale
            )
            schedule = fate(
                Schedule(queued_s, processing_s, images=plan.n, steps=steps),
                rng,
                fault,
                self.settings.failure_rate,
            )
            task = Task(
                task_id=task_id,
                owner=owner,
                created_at=now,
                task_type=submission.task_type,
                model=plan.model,
                prompt=submission.prompt,
                width=plan.width,
                height=plan.height,
                output_format=plan.output_format,
                n=plan.n,
                quality=plan.quality,
                tier=plan.tier,
                aspect_ratio=plan.aspect_ratio,
                size=plan.size,
                references=submission.references,
                has_reference=picture is not None,
                seed=rng.getrandbits(63),
                schedule=schedule,
                # On per_poll a task can be over before its first poll (time_scale 0).
                finished_at=now if schedule.end_poll == 0 else None,
                token=secrets.token_urlsafe(24),  # D-14: never from the seed
            )
            # Task, hold, reference picture and the cap in one store step (one round trip on
            # Redis): a refused submission leaves nothing behind.
            charge, cap = self._charge(task, api_key), self.settings.max_tasks
            placed = await self.store.insert_held(
                task, charge, picture, cap=cap, now=self.step_now(now)
            )
            if placed == "taken":
                continue  # id taken (a restarted seed over a kept store): draw another
            if placed == "full":
                raise RateLimited(
                    f"the emulator holds max_tasks={cap} tasks and none of them has finished; "
                    "retry when some finish, or raise max_tasks",
                    headers={"Retry-After": "1"},
                )
            if placed == "refused":
                raise InsufficientQuota(
                    "the balance of this API key cannot cover this task "
                    f"({charge.held} {self.prices.unit})"
                )
            return task

    def step_now(self, now: float) -> Now:
        """``now`` for a store step: on the manual clock the store reads its own clock inside
        the step (None), so a decision never rests on a time read before a concurrent move."""
        return None if self.settings.clock == "manual" else now

    # -- billing -------------------------------------------------------------------------
    def _charge(self, task: Task, api_key: str) -> Charge:
        unit = self.prices.unit_price(task.model, task.tier, task.quality)
        return Charge(
            *(task.task_id, task.owner, mask_key(api_key), task.created_at, task.model),
            *(task.tier, task.quality, task.n, unit, unit * task.n),
        )

    async def settle(self, task: Task, obs: Observation) -> None:
        """Settle (succeeded: pay for the images returned) or release (failed) a task's hold,
        once ``obs`` shows it ended; the store gives back only what the hold took."""
        if not obs.terminal:
            return
        images = task.schedule.images if obs.status == "succeeded" else 0
        await self.store.settle(task.task_id, images, ended_at(task))

    async def settle_due(self, owner: str | None = None) -> None:
        """Settle every held charge whose task has ended by now (every owner's: ``owner`` is
        accepted for the callers that name one). Indexed: costs what is due."""
        await self.store.settle_due(self.step_now(await self.clock.now()))

    async def set_balance(self, api_key: str, amount: int | None) -> None:
        """Set the balance of ``api_key`` (None: unlimited) in one store step that first
        settles what has ended, so no task that ended before it is settled against it."""
        now = self.step_now(await self.clock.now())
        await self.store.set_balance(key_fingerprint(api_key), mask_key(api_key), amount, now)

    async def usage_totals(self, charges: list[Charge], filters: Mapping[str, str]) -> Any:
        """``billing.totals`` of the listed ``charges`` plus those the bounded usage log no
        longer lists, under the same filters (``key``, ``model``, ``state``; a ``task_id``
        names one listed charge or none)."""
        wanted = {name: filters[name] for name in ("model", "state") if name in filters}
        if "key" in filters:
            wanted["owner"] = key_fingerprint(filters["key"])
        trimmed = [] if "task_id" in filters else await self.store.trimmed_usage()
        return totals(charges, matching(trimmed, wanted))

    async def force_outcome(
        self, task_id: str, outcome: Outcome, code: str | None, message: str | None
    ) -> Task:
        """End a running task now with ``outcome``; a task that already ended cannot change.

        The store checks "not ended" and writes in one step, so a poll or a clock move that
        lands meanwhile (on this worker or another) cannot be overwritten or reversed.
        """
        task = await self.find(None, task_id)
        now = await self.clock.now()
        elapsed = task_elapsed(task, now)
        ended = EmulatorError(
            f"task {task_id!r} has already ended; terminal states are final",
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
        result = await self.store.force_end(forced, self.step_now(now))
        if result == "ended":
            raise ended
        if result == "missing":
            raise TaskNotFound(f"task {task_id!r} does not exist")
        return result

    async def find(self, owner: str | None, task_id: str, *, count_poll: bool = False) -> Task:
        """The task if ``owner`` may see it (None: anyone), else TaskNotFound."""
        task, now = None, None
        if TASK_ID_RE.match(task_id):
            if count_poll and self.settings.clock == "per_poll":
                # One moment for the poll and the answer: the poll that ends a task shows it.
                now = await self.clock.now()
                task = await self.store.count_poll(task_id, owner, now)
            else:
                task = await self.store.get_task(task_id)
        if task is not None and (owner is None or task.owner == owner):
            if not await is_expired(self, task, now):
                return task
            # Only its owner learns that it existed (D-1); once swept, nobody can tell.
            ttl = self.settings.task_ttl_seconds
            message = f"task {task_id!r} has expired: finished tasks are kept {ttl:g} s"
        else:
            message = f"task {task_id!r} does not exist"
        if self.settings.unknown_task_status == 400:
            raise EmulatorError(message, code="task_not_exist")
        raise TaskNotFound(message)

    async def elapsed(self, task: Task) -> float:
        """How far into its schedule ``task`` is: by its own polls and steps if it was
        submitted on the per_poll clock, else by this emulator's clock."""
        if task.schedule.steps is not None:
            return task_elapsed(task, 0.0)  # polls alone: no clock to read
        return task_elapsed(task, await self.clock.now())

    async def observe(self, task: Task) -> Observation:
        return observe(task.schedule, await self.elapsed(task))

    @staticmethod
    def submitted(task: Task) -> Observation:
        """What a submission answers: the new task, queued."""
        return QUEUED

    async def reset(self) -> None:
        """Back to the state at start-up: no tasks, journal or hits; configured faults only."""
        await self.store.reset()
        self.results.renders.clear()
        self.sweeper.reset()
        self._ids = self._id_rng()
        self._started = False
        await self.start()


__all__ = ["Emulator", "key_fingerprint"]
