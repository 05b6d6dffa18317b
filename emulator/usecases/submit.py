"""A submission accepted: its schedule drawn from the seed, stored under a fresh id with its
charge held, in one store step (a refused one leaves nothing behind).

What shapes the task's life (durations, outcome, images, the per_poll steps) is fixed in it
now, so nothing that changes later (settings, rules, prices) changes a task already accepted.
"""

from __future__ import annotations

import secrets

from ..core.clock import Clock
from ..core.draws import KeyedDraws
from ..core.faults import FaultRule
from ..core.keys import key_fingerprint
from ..core.tasks import ScheduleBuilder, Task, TaskBuilder, fate
from ..errors import InsufficientQuota, RateLimited
from ..stores import Store
from .configuration import Configuration
from .poll import Tasks
from .results import Results
from .settle import Billing
from .startup import Startup, TaskIds
from .submission import Submission
from .sweep import Sweeper


class Submitter:
    """Accepts checked submissions for one emulator."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: Configuration,
        *,
        ids: TaskIds,
        startup: Startup,
        tasks: Tasks,
        sweeper: Sweeper,
        billing: Billing,
        results: Results,
    ) -> None:
        self._store, self._clock, self._config = store, clock, config
        self._ids, self._startup, self._tasks = ids, startup, tasks
        self._sweeper, self._billing, self._results = sweeper, billing, results

    async def submit(
        self,
        api_key: str,
        submission: Submission,
        base_url: str,
        fault: FaultRule | None = None,
    ) -> Task:
        """Accept a checked submission: draw its schedule, store it under a fresh id, and hold
        its cost (403 insufficient_quota, and no task, when the key's balance cannot cover it;
        429 when ``max_tasks`` unfinished tasks are stored).

        ``fault`` (a fail_task or partial rule) decides the task's fate instead of the odds.
        """
        owner = key_fingerprint(api_key)
        plan = submission.plan
        picture = submission.picture
        if picture is None and submission.urls:
            picture = await self._results.own_picture(submission.urls, base_url)
        config = self._config
        settings = config.settings
        if picture is None and submission.urls and settings.fetch_reference_urls:
            # opt-in: its HTTP client is not loaded otherwise
            from ..pictures.fetcher import Fences, fetch_picture

            fences = Fences(
                settings.fetch_allow_hosts,
                settings.fetch_allow_private,
                settings.fetch_timeout,
                settings.fetch_max_bytes,
                settings.max_reference_pixels,
            )
            picture = await fetch_picture(submission.urls[0], "image", fences)
        if not self._startup.done:  # awaited only until it is: a coroutine costs ~2.5k
            await self._startup.ensure()  # the id stream is claimed before the first id is drawn
        now = await self._clock.now()
        await self._sweeper.before_submit(now)
        # What shapes the task's life is fixed in it now: later settings apply to new tasks.
        settings = config.settings
        steps = settings.per_poll_steps if settings.clock == "per_poll" else None
        seed = self._ids.seed
        while True:
            task_id = f"task_{self._ids.rng.getrandbits(128):032x}"
            # A keyed hash, not a seeded random.Random: a task's draws ~38k instructions
            # against ~79k (docs/profile.md, round 8); same seed and id, same draws.
            rng = KeyedDraws(f"{seed}:{task_id}")
            queued_s, processing_s = config.timing.draw(
                rng, plan.model, plan.tier, plan.quality, settings.time_scale
            )
            schedule = fate(
                # Positional: the builders' keyword calls cost ~0.5k instructions a keyword
                # (docs/profile.md, round 5); tests/test_tasks.py names each field built.
                ScheduleBuilder(
                    queued_s, processing_s, "succeeded", None, None, None, plan.n, steps
                ),
                rng,
                fault,
                settings.failure_rate,
            )
            task = TaskBuilder(
                task_id,
                owner,
                now,  # created_at
                submission.task_type,
                plan.model,
                submission.prompt,
                plan.width,
                plan.height,
                plan.output_format,
                plan.n,
                plan.quality,
                plan.tier,
                plan.aspect_ratio,
                plan.size,
                submission.references,
                picture is not None,  # has_reference
                rng.getrandbits(63),  # seed
                schedule,
                0,  # polls
                secrets.token_urlsafe(24),  # token; D-14: never from the seed
                # finished_at: on per_poll a task can be over before its first poll (time_scale 0)
                now if schedule.end_poll == 0 else None,
            )
            # Task, hold, reference picture and the cap in one store step (one round trip on
            # Redis): a refused submission leaves nothing behind.
            charge, cap = self._billing.charge(task, api_key), settings.max_tasks
            placed = await self._store.insert_held(
                task, charge, picture, cap=cap, now=self._tasks.step_now(now)
            )
            if placed == "taken":
                continue  # id taken (a restarted seed over a kept store): draw another
            if placed == "full":
                # Full of unfinished tasks, or above a lowered cap with more finished ones to
                # shed than one step evicts (stores/base.evictions_due): say both, as the store
                # does not tell them apart.
                raise RateLimited(
                    f"the emulator holds max_tasks={cap} tasks or more and no room was made: "
                    "none has finished, or, max_tasks having been lowered, more than "
                    f"{self._store.evict_at_most} finished ones must go (evicted at most that "
                    "many a submission); retry when some finish, or raise max_tasks",
                    headers={"Retry-After": "1"},
                )
            if placed == "refused":
                raise InsufficientQuota(
                    "the balance of this API key cannot cover this task "
                    f"({charge.held} {config.prices.unit})"
                )
            return task


__all__ = ["Submitter"]
