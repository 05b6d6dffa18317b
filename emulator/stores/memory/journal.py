"""The memory store's request journal: numbered entries, the newest ``limit`` kept, read by
pages that cost their own entries.

Entries are numbered 1, 2, 3, ... in arrival order and only the oldest leave (the bound) or all
of them (a clear), so the kept ones are numbered without gaps and the entry numbered ``n`` is
found by arithmetic: no search, no walk from the oldest. They live in a list from ``_head``
on; the slots before it (dropped entries) are emptied at once and cut off when they are as many
as the kept ones (a C memmove, amortised over as many appends). A deque would pay for the
cut by reaching the middle of a page's start by walking its blocks, at every page.

An entry is kept as given, or as ``(seq, pending)`` until read (`PendingEntry`: most entries
are dropped unread, docs/profile.md), when it is built and kept built.
"""

from __future__ import annotations

from typing import Any

from ...core.journal import PendingEntry
from ..base import JournalPage, Position, new_epoch

_Item = dict[str, Any] | tuple[int, PendingEntry] | None
#: Emptied slots kept before the first entry at least (a small journal is never cut).
_SLACK = 1024


class Journal:
    """One numbering of the journal (a reset makes a new one: numbers from 1, a new epoch)."""

    def __init__(self) -> None:
        #: This numbering's name: a cursor of another (before a reset or restart) is refused.
        self.epoch = new_epoch()
        #: The number of the newest entry appended (0: none yet).
        self.seq = 0
        self._items: list[_Item] = []
        self._head = 0

    def add(self, entry: dict[str, Any], limit: int) -> None:
        """Keep ``entry`` (the store's to number in place) and only the newest ``limit``."""
        self.seq += 1
        entry["seq"] = self.seq
        self._items.append(entry)
        if len(self._items) - self._head > limit:
            self._drop(limit)

    def add_pending(self, pending: PendingEntry, limit: int) -> None:
        """``add`` of the entry ``pending`` builds, built when first read."""
        self.seq += 1
        self._items.append((self.seq, pending))
        if len(self._items) - self._head > limit:
            self._drop(limit)

    def _drop(self, limit: int) -> None:
        items = self._items
        end = max(self._head, len(items) - max(limit, 0))
        for i in range(self._head, end):
            items[i] = None  # its memory goes now, not at the next cut
        self._head = end
        if end >= _SLACK and 2 * end >= len(items):
            del items[:end]
            self._head = 0

    def clear(self) -> None:
        """Forget every entry; the numbering goes on."""
        self._items = []
        self._head = 0

    def __len__(self) -> int:
        return len(self._items) - self._head

    def page(self, after: Position | None, count: int) -> JournalPage | None:
        """`Store.journal_page` (arguments checked by the store)."""
        start = self._head
        if after is not None:
            if after[1] != self.epoch:
                return None
            # The kept entry numbered above after's: the newest is seq, at the last index.
            start = max(start, len(self._items) - (self.seq - after[0]))
        end = min(start + count, len(self._items))
        entries = self._built(start, end)
        last = (entries[-1]["seq"], self.epoch) if entries else None
        return JournalPage(entries, last, end < len(self._items))

    def tail(self, count: int) -> list[dict[str, Any]]:
        """The newest ``count`` entries, oldest first."""
        return self._built(max(self._head, len(self._items) - count), len(self._items))

    def entries(self) -> list[dict[str, Any]]:
        """Every kept entry, oldest first."""
        return self._built(self._head, len(self._items))

    def _built(self, start: int, end: int) -> list[dict[str, Any]]:
        """The entries from index ``start`` to ``end``, built and kept built: a second read
        returns the same entries (never a second build, which would be another dict)."""
        items = self._items
        entries = []
        for i in range(start, end):
            item = items[i]
            if not isinstance(item, dict):
                assert item is not None  # slots before _head only are emptied
                seq, pending = item
                item = pending.build()
                item["seq"] = seq
                items[i] = item
            entries.append(item)
        return entries
