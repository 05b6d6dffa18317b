"""The emulator: its parts, built here with what each uses, and nothing else (the composition
root); ``emulator.http.app`` serves them over HTTP.

Each part gets the store, the clock, the configuration and the other parts it calls, never the
whole emulator: `Tasks` (a task as a poll sees it), `FaultPicker`, `Submitter`, `Billing`,
`Results`, `Sweeper`, `FaultRules` and `Steering` (the control plane's operations),
`Startup`. The methods here are the emulator's Python API (used by tests and benchmarks); the
routes call the parts.

Nothing here is module-level state: two emulators in one process never share anything.
"""

from __future__ import annotations

import secrets

from ..config import ConfigError, Settings, load_fault_file
from ..core.billing import PriceTable
from ..core.catalogue import Catalogue
from ..core.clock import Clock, ManualClock, WallClock
from ..core.fault_parsing import FaultError, check_rule_count, never_fires
from ..core.faults import FaultRule
from ..core.keys import key_fingerprint
from ..core.tasks import Observation, Outcome, Task
from ..core.timing import Timing
from ..stores import Store, open_store
from .configuration import Configuration
from .fault_rules import FaultRules
from .faults import FaultPicker
from .journal import JournalKeeper
from .poll import Tasks
from .results import Results
from .settle import Billing
from .startup import Startup, TaskIds, store_named
from .steer import Steering
from .submission import Submission
from .submit import Submitter
from .sweep import Sweeper


class Emulator:
    """One emulator's state and operations, independent of HTTP."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.config = config = Configuration(settings)
        settings = config.settings
        try:
            self.store = store or open_store(
                settings.store_url, prefix=settings.store_prefix, timeout=settings.redis_timeout
            )
        except ValueError as exc:
            raise ConfigError(f"setting 'store': {exc}") from None
        store = self.store
        store.usage_log_limit = settings.usage_log_limit
        self.clock: Clock = ManualClock(store) if settings.clock == "manual" else WallClock()
        clock = self.clock
        self.seed = settings.seed if settings.seed is not None else secrets.randbits(63)
        rules = settings.faults + (
            load_fault_file(settings.fault_file) if settings.fault_file else ()
        )
        try:
            check_rule_count(0, len(rules), settings.max_fault_rules, "faults and fault_file")
        except FaultError as exc:
            raise ConfigError(exc.message, field="max_fault_rules") from None
        # A configured rule that could never fire (a typo): named by where it came from, as
        # both sources number their rules from rule-1.
        sources = [("faults", i) for i in range(len(settings.faults))]
        sources += [("fault_file", i) for i in range(len(rules) - len(settings.faults))]
        for rule, (source, i) in zip(rules, sources, strict=True):
            try:
                never_fires(rule.effect, rule.match, rule.id, config.catalogue.model_names)
            except FaultError as exc:
                said = f"setting '{source}' (its rule {i + 1}): {exc.message}"
                raise ConfigError(said, field=source) from None
        self.ids = TaskIds(self.seed)
        where = store_named(settings.store_url, settings.store_prefix)
        self.startup = Startup(store, self.ids, rules, clock=settings.clock, where=where)
        self.tasks = Tasks(store, clock, config)
        self.faults = FaultPicker(store, self.seed, self.startup)
        #: The control plane's fault rules (installed, listed, removed; their hits).
        self.fault_rules = FaultRules(store, config, self.startup)
        self.billing = Billing(store, clock, config, self.tasks)
        #: Result images: their URLs, their bytes, the render cache.
        self.results = Results(store, config, self.tasks)
        #: The request journal's appends, within ``journal_limit``.
        self.journal = JournalKeeper(store, config)
        #: Expires finished tasks (``task_ttl_seconds``).
        self.sweeper = Sweeper(store, config, self.tasks)
        self.submitter = Submitter(
            store,
            clock,
            config,
            ids=self.ids,
            startup=self.startup,
            tasks=self.tasks,
            sweeper=self.sweeper,
            billing=self.billing,
            results=self.results,
        )
        self.steering = Steering(
            store,
            clock,
            config,
            tasks=self.tasks,
            billing=self.billing,
            results=self.results,
            startup=self.startup,
            fault_rules=self.fault_rules,
            apply=self.reconfigure,
            reset=self.reset,
            journal=self.journal,
        )

    # -- what it is configured with ------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.config.settings

    @property
    def catalogue(self) -> Catalogue:
        return self.config.catalogue

    @property
    def timing(self) -> Timing:
        return self.config.timing

    @property
    def prices(self) -> PriceTable:
        return self.config.prices

    def reconfigure(self, settings: Settings) -> None:
        """Apply changed settings at run time (``PATCH /_emulator/config``); a refused change
        (ValueError, OSError) leaves the emulator as it was."""
        self.config.apply(settings)
        self.store.usage_log_limit = settings.usage_log_limit

    # -- the Python API ------------------------------------------------------------------
    async def start(self) -> None:
        """Check the store was kept with this clock (ConfigError naming ``clock`` if not),
        claim the id stream and install the configured fault rules, once (lazily: in-process
        transports skip the ASGI lifespan)."""
        await self.startup.ensure()

    async def submit(
        self,
        api_key: str,
        submission: Submission,
        base_url: str,
        fault: FaultRule | None = None,
    ) -> Task:
        """Accept a checked submission (``Submitter.submit``)."""
        return await self.submitter.submit(api_key, submission, base_url, fault)

    async def find(self, owner: str | None, task_id: str, *, count_poll: bool = False) -> Task:
        """The task if ``owner`` may see it (None: anyone), else TaskNotFound."""
        return await self.tasks.find(owner, task_id, count_poll=count_poll)

    async def observe(self, task: Task) -> Observation:
        return await self.tasks.observe(task)

    async def elapsed(self, task: Task) -> float:
        return await self.tasks.elapsed(task)

    async def settle(self, task: Task, obs: Observation) -> None:
        await self.billing.settle(task, obs)

    async def force_outcome(
        self, task_id: str, outcome: Outcome, code: str | None, message: str | None
    ) -> Task:
        return await self.steering.force_outcome(task_id, outcome, code, message)

    async def reset(self) -> None:
        """Back to the state at start-up: no tasks, journal or hits; configured faults only."""
        await self.store.reset()
        self.journal.forget()  # the journal's numbering starts again: a new window
        self.results.renders.clear()
        self.sweeper.reset()
        await self.startup.again()


__all__ = ["Emulator", "key_fingerprint"]
