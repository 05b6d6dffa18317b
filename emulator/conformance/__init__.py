"""``conform``: is a service (the real one, or the emulator) still the documented API?

Run as ``python -m emulator conform --base-url URL``. Importing this package does not import
schemathesis (the ``conform`` extra): `run_contract` does, and the command says how to install
it when it is missing.

Modules: `options` (what to check, the careful and full profiles), `engine` (one run),
`access` (preflight, keys), `near_misses`, `scenarios` (tasks followed to their end) with
`lifecycle` and `pictures`, `checks` (schemathesis custom checks), `client` (conform's own
exchanges, validated by schemathesis), `harness` (schemathesis' phases, safely), `budget`,
`deviations` (the report), `evidence` (what counts as an answer), `explain`, `progress`, `cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .budget import TaskBudget, TaskCapReached
from .cli import add_arguments, main, options_from_args
from .deviations import Deviation, Report, Sample
from .harness import restrict_to_model
from .options import (
    CHEAPEST_MODEL,
    EXIT_DEVIATIONS,
    EXIT_ERROR,
    EXIT_NOT_CONFIGURED,
    EXIT_OK,
    ConformOptions,
)

if TYPE_CHECKING:
    from .engine import run_contract

__all__ = [
    "CHEAPEST_MODEL",
    "EXIT_DEVIATIONS",
    "EXIT_ERROR",
    "EXIT_NOT_CONFIGURED",
    "EXIT_OK",
    "ConformOptions",
    "Deviation",
    "Report",
    "Sample",
    "TaskBudget",
    "TaskCapReached",
    "add_arguments",
    "main",
    "options_from_args",
    "restrict_to_model",
    "run_contract",
]


def __getattr__(name: str) -> Any:
    # run_contract imports the engine, which imports the catalogue and more: only when asked.
    if name == "run_contract":
        from .engine import run_contract

        return run_contract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
