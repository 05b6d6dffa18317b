"""What a conformance run checks and how carefully: `ConformOptions`, its two profiles, exit codes.

The default ("careful") profile is safe for the paid real service: GET only unless generation is
allowed; then at most ``max_tasks`` tasks in total (near misses a faulty service accepts,
scenarios, schemathesis' own submissions), the cheapest model, positive data from schemathesis,
2 requests/s. ``ConformOptions.full`` lifts the caps, for an emulator you run yourself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Exit codes of ``conform``.
EXIT_OK = 0
#: Deviations found, or something could not be checked.
EXIT_DEVIATIONS = 1
#: The run could not happen or checked nothing: bad settings, schemathesis missing, connection
#: refused, authentication refused, not one successful exchange.
EXIT_ERROR = 2
EXIT_NOT_CONFIGURED = 3

#: The model a careful run submits with: the lowest tier, enabled on the real service per its
#: document (SPEC 2.3).
CHEAPEST_MODEL = "NanoBanana2-0.5K"
#: gpt-image-2 in a careful run: its smallest tier (1K) and lowest quality.
CHEAPEST_GPT = {"model": "gpt-image-2", "size": "1024x768", "quality": "low"}
ALL_PHASES = ("examples", "coverage", "fuzzing", "stateful")


@dataclass(frozen=True, slots=True)
class ConformOptions:
    """What to check and how carefully. The defaults are safe for a paid service."""

    base_url: str | None = None
    api_key: str | None = None
    #: A second valid key: tasks of the first key must be invisible to it (D-1).
    second_api_key: str | None = None
    #: An ASGI app to check in-process instead of ``base_url`` (tests).
    app: Any = None
    contract: Path | None = None
    allow_generation: bool = False
    #: schemathesis sends schema-violating data too (negative mode). Near misses are sent
    #: whenever generation is allowed: a correct service refuses them at no cost.
    negative: bool = False
    #: schemathesis submits with every model and field, and the scenarios cover more models;
    #: off: schemathesis submits only `model` with n = 1, in JSON.
    all_models: bool = False
    model: str = CHEAPEST_MODEL
    #: Tasks created at most, by everything the run sends (0: no cap).
    max_tasks: int = 3
    max_examples: int = 5
    #: schemathesis rate limit, e.g. "2/s"; None: unlimited.
    rate_limit: str | None = "2/s"
    phases: tuple[str, ...] = ("examples", "fuzzing", "stateful")
    seed: int = 20261125
    workers: int = 1
    #: Seconds one read may wait (schemathesis' requests and conform's own).
    request_timeout: float = 30.0
    #: Seconds one of conform's own requests may take in all (connect, head and body): a
    #: service trickling its answer a byte at a time never trips the per-read timeout.
    request_deadline: float = 60.0
    #: Seconds the whole run may take (0: no bound); then what is left is not sent, and the
    #: run says so (an error, exit 1).
    max_run_time: float = 1800.0
    #: Seconds to wait for a connection: a refused or unreachable service fails fast.
    connect_timeout: float = 5.0
    #: Every answer must come within this many seconds (None: not checked).
    max_response_time: float | None = None
    #: Polling a scenario's task: first interval, backoff factor, longest interval (the document
    #: says 2-5 s), and how long after its submission a task may take to finish.
    poll_interval: float = 2.0
    poll_backoff: float = 1.5
    poll_max_interval: float = 5.0
    poll_deadline: float = 300.0
    #: Polls of one task at most (the deadline at 2-5 s a poll is ~100).
    max_polls: int = 120
    #: Polls after a task ended, to see that its terminal state is final (polls are free):
    #: ``poll_interval`` apart, so ~10 s of watching at the default 2 s.
    polls_after_end: int = 5
    #: Seconds between progress lines during a long phase.
    progress_every: float = 5.0
    #: Extra schemathesis settings (same keys as schemathesis.toml), merged over the file's.
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def full(cls, **kwargs: Any) -> ConformOptions:
        """Every phase, check, model and mode, no caps: for an emulator you run yourself."""
        settings: dict[str, Any] = {
            "allow_generation": True,
            "negative": True,
            "all_models": True,
            "max_tasks": 0,
            "rate_limit": None,
            "phases": ALL_PHASES,
            "max_examples": 25,
        }
        settings.update(kwargs)
        return cls(**settings)

    @property
    def profile(self) -> str:
        if self.negative or self.all_models:
            return "full"
        return "careful, generation allowed" if self.allow_generation else "careful, GET only"

    def nano_model(self, models: Mapping[str, Any]) -> str:
        """The NanoBanana-family model to submit with: ``model`` when it is one, else the
        cheapest (``models``: the catalogue's name -> spec)."""
        spec = models.get(self.model)
        return self.model if getattr(spec, "family", None) == "nano" else CHEAPEST_MODEL

    @property
    def target(self) -> str:
        return self.base_url or "the in-process app"


_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def rate_gap(rate: str | None) -> float:
    """Seconds between two requests for a rate like ``"2/s"`` (schemathesis' form); 0: none."""
    if not rate:
        return 0.0
    count, _, period = rate.partition("/")
    if not count.isdigit() or int(count) < 1 or period not in _PERIODS:
        raise ValueError(
            f"--rate-limit must look like 2/s, 100/m, 1000/h or 10000/d (or '' for none), "
            f"got {rate!r}"
        )
    return _PERIODS[period] / int(count)
