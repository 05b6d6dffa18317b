"""Every part of schemathesis conform uses that is not its public API, in one place.

schemathesis' public Python API runs tests under pytest; conform runs its phases itself and
reads what they found, which only the engine (the CLI's own machinery) offers. Each name here
has a test in ``tests/test_privates.py`` that fails, naming schemathesis and its version, if
an upgrade moves it or changes the fields ``engine.py`` reads:

- ``execute``: the engine run on a schema, as its events (``events``, ``Status``); the events'
  and scenario recorders' fields are read by ``engine._execute`` and ``engine.collect``.
- ``global_hook``: ``before_call`` hooks are dispatched only globally, so conform registers one
  for the run and must take it off after (``GLOBAL_HOOK_DISPATCHER.unregister``), or the next
  run in the process would call it too.
- ``stop``: ends ``execute``'s stream early (``EventStream.stop``), when the run's time is up.
- ``Binary``: the value of a ``format: binary`` multipart part, which conform's ``map_case``
  hook replaces with a real picture.

Imported only when conform runs (schemathesis is the ``conform`` extra).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import schemathesis
from schemathesis.engine import Status, events, from_schema
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
from schemathesis.transport.serialization import Binary


def execute(schema: Any) -> Iterable[Any]:
    """The engine's events for a run of ``schema`` (its config says which phases)."""
    events_of: Iterable[Any] = from_schema(schema).execute()
    return events_of


def stop(run: Iterable[Any]) -> None:
    """Ask a run (``execute``'s stream) to end after its current test scenario."""
    run.stop()  # type: ignore[attr-defined]


@contextlib.contextmanager
def global_hook(hook: Callable[..., Any]) -> Iterator[None]:
    """``hook`` (named for what it hooks, e.g. ``before_call``) registered for the block."""
    schemathesis.hook(hook)
    try:
        yield
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(hook)


__all__ = ["Binary", "Status", "events", "execute", "global_hook", "stop"]
