"""A faithful local emulator of an asynchronous image-generation task API."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Settings, build_settings
    from .http.app import create_app
    from .usecases.emulator import Emulator

__all__ = ["Emulator", "Settings", "build_settings", "create_app"]
__version__ = "0.1.0"

#: Where each public name lives. They are imported when first asked for, not with the package:
#: pytest imports ``emulator.testing.plugin`` (so this package) at the start of every session,
#: and importing the app (Starlette and the rest) took most of that session's start-up.
_LAZY = {
    "Emulator": "usecases.emulator",
    "create_app": "http.app",
    "Settings": "config",
    "build_settings": "config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
