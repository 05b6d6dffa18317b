"""The memory store's submission order, searchable: where a task stands, found without a walk.

The store keeps its tasks in an ordered dict, which has no "the items after this key" short
of iterating from the start (~100,000 steps at the default cap, for every page of a listing).
So each task also gets a number (rising, never given twice: ``clear`` keeps counting, and the
epoch made with the index, which names this numbering, stays), and two parallel sequences
hold the numbers (``array('q')``, 8 bytes each) and the ids in submission order. A page
starts at the first number above its cursor's, found by bisecting the numbers (C, ~17 steps
at 100,000), whether or not the cursor's own task is still there.

A removed task is not looked for in them (that would cost each removal a search): its entry
stays, skipped by the reads (its id is no stored task's), until as many tasks were removed as
are stored, when the sequences are rebuilt without them (C loops, ~2 ms at 100,000). A task
stored again under a removed task's id rebuilds them first, so an old entry never lists it
twice.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from itertools import chain, compress, islice
from itertools import count as counting
from typing import Any

from ..pages import Position, new_epoch

#: Removals kept unswept at least (a small store is never rebuilt).
_SLACK = 1024
#: Ids a read copies at a time from where it starts (a slice: no walk from the first).
_CHUNK = 256


class SubmissionOrder:
    """Numbers and ids of the tasks in submission order, for one `MemoryStore`."""

    def __init__(self) -> None:
        #: This numbering's name: a position of another (a store before a restart) is refused.
        self.epoch = new_epoch()
        self._next = 0
        self._numbers = array("q")
        self._ids: list[str] = []
        #: Ids removed since the last rebuild, whose entries are still in the sequences.
        self._removed: set[str] = set()

    def add(self, task_id: str, tasks: Mapping[str, Any]) -> None:
        """``task_id`` is being stored (``tasks``: the store's tasks, without it yet)."""
        if task_id in self._removed:
            self._compact(tasks)  # its old entry goes first: never two entries of one id
        self._numbers.append(self._next)
        self._ids.append(task_id)
        self._next += 1

    def removed(self, task_id: str, tasks: Mapping[str, Any]) -> None:
        """``task_id`` is no longer stored (``tasks``: the store's tasks, without it)."""
        self._removed.add(task_id)
        if len(self._removed) > len(tasks) + _SLACK:
            self._compact(tasks)

    def clear(self) -> None:
        """Forget every position; numbering goes on, in the same epoch (a cursor from before
        leads to the tasks stored after)."""
        self._numbers = array("q")
        self._ids = []
        self._removed = set()

    def page(
        self, after: Position | None, count: int, tasks: Mapping[str, Any]
    ) -> tuple[list[str], Position | None, bool] | None:
        """The ids of at most ``count`` stored tasks numbered above ``after``'s number (None:
        from the first), the position of the last and whether stored tasks follow it; None
        when ``after`` is of another epoch."""
        start = 0
        if after is not None:
            number, epoch = after
            if epoch != self.epoch:
                return None
            start = bisect_right(self._numbers, number)
        # The indexes of stored entries from ``start``, in C all through: a page costs its
        # span, removed tasks included, but never a Python step for each of them.
        stored = compress(counting(start), map(tasks.__contains__, self._from(start)))
        indexes = list(islice(stored, count + 1))
        if not indexes:
            return [], None, False
        more = len(indexes) > count
        del indexes[count:]
        last = indexes[-1]
        ids = self._ids
        return [ids[i] for i in indexes], (self._numbers[last], self.epoch), more

    def _from(self, start: int) -> Iterator[str]:
        """The ids from index ``start`` on, sliced a chunk at a time (no walk from the first)."""
        ids = self._ids
        return chain.from_iterable(ids[i : i + _CHUNK] for i in range(start, len(ids), _CHUNK))

    def _compact(self, tasks: Mapping[str, Any]) -> None:
        """Drop the entries of removed tasks."""
        kept = list(map(tasks.__contains__, self._ids))
        self._numbers = array("q", compress(self._numbers, kept))
        self._ids = list(compress(self._ids, kept))
        self._removed = set()
