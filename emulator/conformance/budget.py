"""The run's allowance of tasks: every submission it sends, of any kind, draws from one budget.

A submission takes a task before it is sent and gives it back only when the service clearly
refused it (a 4xx). An answer that says nothing certain (5xx, a dropped connection, a timeout)
keeps the task spent: a paid service may have created it.
"""

from __future__ import annotations

import threading


class TaskCapReached(RuntimeError):
    """Raised instead of sending a submission once the run has spent its allowance."""


class TaskBudget:
    """At most ``limit`` tasks created (0: no limit); safe to share between threads."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"max_tasks must be >= 0, got {limit}")
        self.limit = limit
        self._spent = 0
        self._refused = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one task if any is left; False: do not send."""
        with self._lock:
            if self.limit and self._spent >= self.limit:
                return False
            self._spent += 1
            return True

    def give_back(self) -> None:
        """The submission was refused: it created nothing."""
        with self._lock:
            self._spent -= 1
            self._refused += 1

    @property
    def spent(self) -> int:
        """Submissions that created a task or may have."""
        return self._spent

    @property
    def refused(self) -> int:
        return self._refused

    @property
    def left(self) -> int | None:
        """Tasks still allowed; None: no limit."""
        return None if not self.limit else max(0, self.limit - self._spent)


def refused(status: int) -> bool:
    """Whether an answer with ``status`` means the submission created no task."""
    return 400 <= status < 500
