"""The caches that keep drawn pictures: one per emulator (`RenderCache`) and one process-wide
memo of pure answers (`memoised_render`).

No Pillow here: `emulator.pictures.rendering` (which draws) is imported when the first picture
is drawn, so creating an emulator (the pytest fixture does per test) does not pay for loading
Pillow.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from .spec import RenderSpec

#: Bytes the process-wide memo of pictures may hold (see `picture`).
MEMO_BYTES = 64 * 1024 * 1024


class RenderCache:
    """Rendered pictures kept by key, least recently used first out, bounded by total bytes.

    A picture larger than the whole budget is not kept; ``max_bytes=0`` keeps nothing.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: Hashable) -> bytes | None:
        """The bytes kept for ``key`` (now the most recently used), or None."""
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: Hashable, data: bytes) -> None:
        """Keep ``data`` for ``key``, evicting least recently used items beyond the budget."""
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= len(old)
        if len(data) > self.max_bytes:
            return
        self._items[key] = data
        self._size += len(data)
        while self._size > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._size -= len(evicted)

    def clear(self) -> None:
        """Forget every picture."""
        self._items.clear()
        self._size = 0

    @property
    def size_bytes(self) -> int:
        """Total bytes kept."""
        return self._size

    def __len__(self) -> int:
        return len(self._items)


class _Memo:
    """Pictures by spec, least recently used first out, bounded by bytes (each picture's
    bytes plus its spec's prompt and reference picture), safe across threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[RenderSpec, tuple[bytes, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, spec: RenderSpec) -> bytes | None:
        with self._lock:
            item = self._items.get(spec)
            if item is None:
                return None
            self._items.move_to_end(spec)
            return item[0]

    def put(self, spec: RenderSpec, data: bytes) -> None:
        weight = len(data) + len(spec.prompt) + len(spec.reference or b"")
        if weight > self.max_bytes // 8:
            return  # an 8K picture would push out everything else
        with self._lock:
            old = self._items.pop(spec, None)
            self._size += weight - (old[1] if old else 0)
            self._items[spec] = (data, weight)
            while self._size > self.max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._size -= evicted

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


# Why process-wide is allowed here, where emulators otherwise share nothing: a picture is a pure
# function of its spec (seed, task id, size, prompt, reference...), so this memo holds no state
# of any emulator, only answers of `render` that any emulator would compute identically. It pays
# where a per-emulator cache cannot: the pytest fixture makes a fresh emulator per test, and
# drawing the same seeded picture again was most of such a test. Its bytes are the very objects
# the emulators' RenderCaches hold, so a picture kept by both is not kept twice.
memo = _Memo(MEMO_BYTES)


def memoised_render(spec: RenderSpec) -> bytes:
    """``rendering.render(spec)``, remembered process-wide (up to ``MEMO_BYTES``)."""
    data = memo.get(spec)
    if data is None:
        from .rendering import render  # Pillow is loaded with the first picture drawn

        data = render(spec)
        memo.put(spec, data)
    return data


__all__ = ["MEMO_BYTES", "RenderCache", "memoised_render"]
