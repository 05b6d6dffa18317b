"""The memory store's tasks ordered by when they end, so expiry need not read every task.

``MemoryStore.expire`` runs every 256 submissions; a pass over 100,000 stored tasks cost more
than the submissions in between. This keeps (end, submission number, id) in a heap instead.
An entry goes stale when its task is removed or its end moves (a forced outcome): stale
entries are skipped when they come up, and dropped wholesale when they outnumber live ones.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping

from .tasks import Task


def ended_at(task: Task) -> float:
    """Clock time at which ``task`` reaches its outcome by its schedule (what expiry counts from).

    On the per_poll clock this is where the wall clock would end it, not where polls did.
    """
    return task.created_at + task.schedule.ends_at


class EndIndex:
    """Task ids by end time, earliest first; ties in submission order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._numbers = itertools.count()

    def add(self, task: Task, tasks: Mapping[str, Task]) -> None:
        """Index a newly stored ``task`` (``tasks``: every stored task, to drop stale entries)."""
        if len(self._heap) > 2 * len(tasks) + 1024:
            self._heap = [e for e in self._heap if _live(e, tasks)]
            heapq.heapify(self._heap)
        heapq.heappush(self._heap, (ended_at(task), next(self._numbers), task.task_id))

    def moved(self, old: Task, new: Task) -> None:
        """``old`` was replaced by ``new``; index its new end if it changed."""
        end = ended_at(new)
        if end != ended_at(old):
            # The same submission number as before: ties keep submission order.
            number = next(n for _, n, i in self._heap if i == new.task_id)
            heapq.heappush(self._heap, (end, number, new.task_id))

    def pop_ended(
        self, tasks: Mapping[str, Task], by: float, limit: int | None, remove: Callable[[str], None]
    ) -> list[tuple[int, Task]]:
        """``remove`` the tasks that ended at or before ``by``, earliest first, at most
        ``limit``; (submission number, task) of each."""
        heap = self._heap
        out: list[tuple[int, Task]] = []
        while heap and heap[0][0] <= by and (limit is None or len(out) < limit):
            entry = heapq.heappop(heap)
            task = tasks.get(entry[2])
            if task is None or ended_at(task) != entry[0]:
                continue  # stale: removed, or its end moved (it has a newer entry)
            remove(entry[2])
            out.append((entry[1], task))
        return out

    def clear(self) -> None:
        self._heap.clear()


def _live(entry: tuple[float, int, str], tasks: Mapping[str, Task]) -> bool:
    task = tasks.get(entry[2])
    return task is not None and ended_at(task) == entry[0]


__all__ = ["EndIndex", "ended_at"]
