"""The default backend: state in this process's memory (``store``), tasks ordered by their end
(``end_index``)."""

from __future__ import annotations

from .store import MemoryStore

__all__ = ["MemoryStore"]
