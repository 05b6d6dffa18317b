"""A terminal task's answer, kept per task: its status is final (the life cycle is a function
of the schedule fixed at submission), so every later poll of it answers the same bytes, as
long as what else the answer depends on is unchanged.

That is the settings that shape it (envelope, error_shape, always_list_results,
public_base_url) and the base URL the request came in on: all part of the key, so a change at
run time shows in the next poll. The task's token and seed are in it too: after a reset the
ids restart from the seed, but a new task never has the old one's token.
"""

from __future__ import annotations

from collections.abc import Hashable

#: Answers kept per app: about 0.5 KB each; the oldest goes first.
MAX_KEPT = 4096


class TerminalAnswers:
    """Answer bytes of terminal tasks, at most ``limit`` of them."""

    __slots__ = ("_kept", "_limit")

    def __init__(self, limit: int = MAX_KEPT) -> None:
        self._kept: dict[Hashable, bytes] = {}
        self._limit = limit

    def get(self, key: Hashable) -> bytes | None:
        return self._kept.get(key)

    def keep(self, key: Hashable, content: bytes) -> None:
        kept = self._kept
        if len(kept) >= self._limit:
            del kept[next(iter(kept))]  # the oldest (insertion order)
        kept[key] = content

    def clear(self) -> None:
        self._kept.clear()


__all__ = ["MAX_KEPT", "TerminalAnswers"]
