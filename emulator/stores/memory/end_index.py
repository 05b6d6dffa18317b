"""The memory store's tasks ordered by when they end, so expiry need not read every task.

A sweep or a full store takes the earliest-ended tasks; a pass over 100,000 stored tasks cost
more than the submissions in between. This keeps (end, push number, id) in a heap instead. A
task is pushed when its end becomes known: at submission on a time clock, at the poll that
ends it on the per_poll clock, again when a forced outcome moves it. An entry goes stale when
its task is removed or its end moves: stale entries are skipped when they come up, and dropped
wholesale when they outnumber live ones. Tasks are the store's packed tuples (``packed``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Mapping

from .packed import PackedTask, id_of, packed_end


class EndIndex:
    """Task ids by end time, earliest first; ties in the order their ends became known."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._numbers = itertools.count()

    def push(self, task: PackedTask, tasks: Mapping[str, PackedTask]) -> None:
        """Index ``task``'s end if it is known (``tasks``: every stored task, to drop stale
        entries now and then). Call it again whenever the end moves."""
        end = packed_end(task)
        if end == math.inf:
            return
        if len(self._heap) > 2 * len(tasks) + 1024:
            self._heap = [e for e in self._heap if _live(e, tasks)]
            heapq.heapify(self._heap)
        heapq.heappush(self._heap, (end, next(self._numbers), id_of(task)))

    def pop_ended(
        self,
        tasks: Mapping[str, PackedTask],
        by: float,
        limit: int | None,
        take: Callable[[PackedTask], bool],
    ) -> int:
        """Offer the tasks whose end is at or before ``by`` to ``take``, earliest first, until
        ``limit`` were taken; the number taken. A task ``take`` declines (not ended after all,
        by the exact check) keeps its entry."""
        heap, declined, taken = self._heap, [], 0
        while heap and heap[0][0] <= by and (limit is None or taken < limit):
            entry = heapq.heappop(heap)
            task = tasks.get(entry[2])
            if task is None or packed_end(task) != entry[0]:
                continue  # stale: removed, or its end moved (it has a newer entry)
            if take(task):
                taken += 1
            else:
                declined.append(entry)
        for entry in declined:
            heapq.heappush(heap, entry)
        return taken

    def clear(self) -> None:
        self._heap.clear()


def _live(entry: tuple[float, int, str], tasks: Mapping[str, PackedTask]) -> bool:
    task = tasks.get(entry[2])
    return task is not None and packed_end(task) == entry[0]


__all__ = ["EndIndex"]
