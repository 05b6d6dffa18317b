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

from starlette.responses import Response

from .privates import PrebuiltResponse

#: Answers kept per app: about 0.5 KB each; the oldest goes first.
MAX_KEPT = 4096

#: A kept answer: its body and the headers ``Response(body, media_type=...)`` gives it.
Kept = tuple[bytes, tuple[tuple[bytes, bytes], ...]]


def kept_answer(kept: Kept) -> Response:
    """A kept answer as a Response, without recomputing its headers; the header list is a
    new one per answer: whoever receives it may change it."""
    return PrebuiltResponse(kept[0], list(kept[1]))


class TerminalAnswers:
    """Answers of terminal tasks, at most ``limit`` of them."""

    __slots__ = ("_kept", "_limit")

    def __init__(self, limit: int = MAX_KEPT) -> None:
        self._kept: dict[Hashable, Kept] = {}
        self._limit = limit

    def get(self, key: Hashable) -> Kept | None:
        return self._kept.get(key)

    def keep(self, key: Hashable, content: bytes, media_type: str) -> Kept:
        """Keep ``content``, to be answered with ``media_type`` (status 200)."""
        kept = self._kept
        if len(kept) >= self._limit:
            del kept[next(iter(kept))]  # the oldest (insertion order)
        headers = Response(content, media_type=media_type).raw_headers
        answer = kept[key] = (content, tuple(headers))
        return answer

    def clear(self) -> None:
        self._kept.clear()


__all__ = ["MAX_KEPT", "Kept", "TerminalAnswers", "kept_answer"]
