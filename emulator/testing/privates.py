"""pytest's private API the fixture uses: in one place, checked by tests/test_privates.py.

pytest rewrites the asserts of every module of a plugin's distribution (all of ``emulator``,
installed from a wheel), loading each through its own cache (``marshal.load`` from a file
object, the source hashed). The emulator's modules hold no asserts a user reads, and that
loading was a fifth of the in-process fixture's first setup (callgrind, docs/profile.md).
pytest has no public way to take a name back: `skip_assertion_rewriting` does it on the
session's rewrite hook, before the conftests load (so they import the emulator plainly too).
The user's test modules and conftests are rewritten as ever.
"""

from __future__ import annotations

from typing import Any

import pytest


def skip_assertion_rewriting(config: pytest.Config, package: str) -> None:
    """Modules of ``package`` imported from now on are imported as Python does, not rewritten.

    Nothing happens where pytest does not rewrite (``--assert=plain``) or changed how it
    remembers what it does (tests/test_privates.py fails then).
    """
    hook: Any = config.pluginmanager.rewrite_hook
    marked = getattr(hook, "_must_rewrite", None)
    decided = getattr(hook, "_marked_for_rewrite_cache", None)
    if not isinstance(marked, set) or not isinstance(decided, dict):
        return
    marked.discard(package)
    for name in [n for n in decided if n == package or n.startswith(package + ".")]:
        del decided[name]


__all__ = ["skip_assertion_rewriting"]
