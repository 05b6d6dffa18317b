"""The names of `emulator.conformance` under their older home, ``emulator.conform``."""

from __future__ import annotations

from .conformance import (
    CHEAPEST_MODEL,
    EXIT_DEVIATIONS,
    EXIT_ERROR,
    EXIT_NOT_CONFIGURED,
    EXIT_OK,
    ConformOptions,
    Deviation,
    Report,
    TaskCapReached,
    add_arguments,
    main,
    options_from_args,
    restrict_to_model,
)
from .conformance.engine import run_contract

__all__ = [
    "CHEAPEST_MODEL",
    "EXIT_DEVIATIONS",
    "EXIT_ERROR",
    "EXIT_NOT_CONFIGURED",
    "EXIT_OK",
    "ConformOptions",
    "Deviation",
    "Report",
    "TaskCapReached",
    "add_arguments",
    "main",
    "options_from_args",
    "restrict_to_model",
    "run_contract",
]
