"""The one place the benchmarks reach into the emulator's internal modules.

Everything else in benchmarks/ uses public names only: ``python -m emulator serve``,
``emulator.Emulator``, ``emulator.Settings`` and the pytest plugin, found through its
``pytest11`` entry point (``image_emulator``). Three measurements need more, and each name is
looked up at its home in the layered package first (branch p2-layers), then at its old one:

- ``Submission`` (memory.py submits without HTTP): ``emulator.usecases.submission``, formerly
  ``emulator.validation``;
- the renderer (rendering.py measures it alone): ``render`` and ``RenderSpec`` in
  ``emulator.pictures.rendering`` and ``RenderCache`` in ``emulator.pictures.cache``, formerly
  all three in ``emulator.rendering``;
- the Redis store's Lua scripts (redis_monitor.py only names what MONITOR shows with them):
  ``emulator.stores.redis.scripts``, formerly ``emulator.redis_scripts``, the journal's in
  ``emulator.stores.redis.journal`` and the fault rules' in ``emulator.stores.redis.faults``
  (both formerly with the others).

Imports happen when asked for, not with this module. tests/test_bench_internals.py fails
loudly when a name is at neither home.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

SUBMISSION = ("emulator.usecases.submission", "emulator.validation")
RENDERING = ("emulator.pictures.rendering", "emulator.rendering")
RENDER_CACHE = ("emulator.pictures.cache", "emulator.rendering")
REDIS_SCRIPTS = ("emulator.stores.redis.scripts", "emulator.redis_scripts")
REDIS_JOURNAL_SCRIPTS = ("emulator.stores.redis.journal", *REDIS_SCRIPTS)
REDIS_FAULT_SCRIPTS = ("emulator.stores.redis.faults", *REDIS_SCRIPTS)
PLUGIN_ENTRY_POINT = "image_emulator"


def first_module(*names: str) -> ModuleType:
    """The first of ``names`` that exists. Only a module that is absent moves on to the next:
    an import that fails inside a module that exists is an error, not a reason to fall back."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            # "emulator.pictures.rendering" is absent where emulator/pictures.py is a module:
            # Python then names the whole dotted path (or a parent of it) as missing.
            if not (name == missing or name.startswith(missing + ".")):
                raise
    raise ModuleNotFoundError(f"none of {', '.join(names)} exists: update benchmarks/internals.py")


def submission_type() -> Any:
    """The class of a parsed submission (what ``Emulator.submit`` takes)."""
    return first_module(*SUBMISSION).Submission


@dataclass(frozen=True)
class Renderer:
    render: Any
    RenderSpec: Any
    RenderCache: Any
    #: The file the renderer was loaded from (for the report).
    origin: str


def renderer() -> Renderer:
    rendering = first_module(*RENDERING)
    cache = first_module(*RENDER_CACHE)
    return Renderer(
        rendering.render, rendering.RenderSpec, cache.RenderCache, str(rendering.__file__)
    )


def redis_scripts() -> list[ModuleType]:
    """The modules holding the Redis store's Lua scripts (as upper-case str constants): the
    store's, the journal's and the fault rules' (one module where those are still with the
    others)."""
    homes = (REDIS_SCRIPTS, REDIS_JOURNAL_SCRIPTS, REDIS_FAULT_SCRIPTS)
    found = [first_module(*names) for names in homes]
    return list(dict.fromkeys(found))


def plugin_module() -> str:
    """The module of the pytest plugin, as the package registers it (public)."""
    for entry in metadata.entry_points(group="pytest11"):
        if entry.name == PLUGIN_ENTRY_POINT:
            return entry.value.partition(":")[0]
    raise LookupError(f"no pytest11 entry point {PLUGIN_ENTRY_POINT!r}: is the package installed?")
