"""The memory store's request journal: numbered entries, the newest ``limit`` kept, read by
pages that cost their own entries.

Entries are numbered 1, 2, 3, ... in arrival order and only the oldest leave (the bound) or all
of them (a clear), so the kept ones are numbered without gaps and the entry numbered ``n`` is
found by arithmetic: no search, no walk from the oldest (a deque, which main used, reaches an
index by walking its blocks, and has no iterator that starts there). They live in a plain list,
the newest ``limit`` of it being the journal. The entries beyond the bound are cut off in
batches: when the list is longer than the bound by an eighth of it (at least 64, at most 8,192
entries), one ``del`` drops the excess (a C memmove), so an append is an append and a compare:
`MemoryStore.append_pending` at a full journal of 1,000 costs what the deque's append and
popleft did (3,102 against 3,123 instructions, callgrind; while a journal of 10^6 fills, 4,229
against 3,627: the list's growth). What that costs is memory: up to that many dropped entries
stay alive until the cut.

An entry is kept as given, or as ``(seq, pending)`` until read (`PendingEntry`: most entries
are dropped unread, docs/profile.md), when it is built and kept built.
"""

from __future__ import annotations

from typing import Any

from ...core.journal import PendingEntry
from ..pages import JournalPage, Position, dropped_before, new_epoch

_Item = dict[str, Any] | tuple[int, PendingEntry]
#: Dropped entries a journal keeps before cutting them off, at least and at most.
_SLACK_MIN, _SLACK_MAX = 64, 8192


class Journal:
    """One numbering of the journal (a reset makes a new one: numbers from 1, a new epoch)."""

    def __init__(self) -> None:
        #: This numbering's name: a cursor of another (before a reset or restart) is refused.
        self.epoch = new_epoch()
        #: The number of the newest entry appended (0: none yet).
        self.seq = 0
        #: ``seq`` when the journal was last cleared (`JournalPage.dropped`).
        self.cleared = 0
        self._items: list[_Item] = []
        #: The bound of the last append: the journal is the newest ``_limit`` items.
        self._limit = 0
        #: How long the list may grow before the excess is cut off.
        self._cut_at = 0

    def add(self, entry: dict[str, Any], limit: int) -> None:
        """Keep ``entry`` (the store's to number in place) and only the newest ``limit``."""
        self.seq = seq = self.seq + 1
        entry["seq"] = seq
        items = self._items
        items.append(entry)
        if len(items) > self._cut_at or limit != self._limit:
            self._cut(limit)

    def add_pending(self, pending: PendingEntry, limit: int) -> None:
        """``add`` of the entry ``pending`` builds, built when first read."""
        self.seq = seq = self.seq + 1
        items = self._items
        items.append((seq, pending))
        if len(items) > self._cut_at or limit != self._limit:
            self._cut(limit)

    def _cut(self, limit: int) -> None:
        """After an append: drop what is beyond ``limit`` and what the bound before it had
        already dropped (a raised bound must not bring back entries not yet cut off)."""
        items = self._items
        limit = max(limit, 0)
        first = max(0, len(items) - 1 - self._limit, len(items) - limit)
        del items[:first]
        self._limit = limit
        self._cut_at = limit + min(max(_SLACK_MIN, limit >> 3), _SLACK_MAX)

    def clear(self, mark: bool = True) -> None:
        """Forget every entry; the numbering goes on. ``mark``: as a clear (not the bound)."""
        self._items = []
        if mark:
            self.cleared = self.seq

    def _first(self) -> int:
        """The index of the oldest kept entry."""
        return max(0, len(self._items) - self._limit)

    def page(self, after: Position | None, count: int) -> JournalPage | None:
        """`Store.journal_page` (arguments checked by the store)."""
        start = self._first()
        if after is not None:
            if after[1] != self.epoch:
                return None
            # The kept entry numbered above after's: the newest is seq, at the last index.
            start = max(start, len(self._items) - (self.seq - after[0]))
        end = min(start + count, len(self._items))
        entries = self._built(start, end)
        last = (entries[-1]["seq"], self.epoch) if entries else None
        first = entries[0]["seq"] if entries else None
        dropped = dropped_before(first, self.seq, self.cleared, after)
        return JournalPage(entries, last, end < len(self._items), dropped)

    def tail(self, count: int) -> list[dict[str, Any]]:
        """The newest ``count`` entries, oldest first."""
        return self._built(max(self._first(), len(self._items) - count), len(self._items))

    def _built(self, start: int, end: int) -> list[dict[str, Any]]:
        """The entries from index ``start`` to ``end``, built and kept built: a second read
        returns the same entries (never a second build, which would be another dict)."""
        items = self._items
        entries = []
        for i in range(start, end):
            item = items[i]
            if not isinstance(item, dict):
                seq, pending = item
                item = pending.build()
                item["seq"] = seq
                items[i] = item
            entries.append(item)
        return entries
