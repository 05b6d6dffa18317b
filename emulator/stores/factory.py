"""Which backend a store URL names, and opening it: the interface (``base``) knows none of them.

Each backend is imported only when a URL asks for it (Redis' client and SQLite's driver are
not loaded for the default in-memory store).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from .base import EVICT_AT_MOST, Store

#: What the ``store`` setting accepts (checked at start-up, see emulator/config/values.py).
STORE_URL_FORMS = "'memory', 'sqlite:///path/to/file.db' or 'redis://host:port/db'"


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite://`` URL: ``sqlite:///abs/file.db`` or ``sqlite://rel/file.db``."""
    path = url.removeprefix("sqlite://")
    if not url.startswith("sqlite://") or not path or path.endswith("/"):
        raise ValueError(f"store {url!r} is not a SQLite URL; use 'sqlite:///path/to/file.db'")
    return Path(path)


def masked_url(url: str) -> str:
    """A store URL fit to show (messages, ``GET /_emulator/config``): any password masked."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def open_store(
    url: str,
    *,
    prefix: str = "emulator",
    timeout: float = 1.0,
    evict_at_most: int = EVICT_AT_MOST,
) -> Store:
    """The backend named by ``url`` (``prefix`` namespaces keys in a shared server; ``timeout``
    bounds each call to a Redis server, in seconds; ``evict_at_most``: the most tasks one
    submission evicts from a full store, which the emulator leaves at its default).

    Raises ValueError naming the URL when it is not supported or the store cannot be opened,
    or naming ``evict_at_most`` when it is not an integer of at least 1.
    """
    if url in ("memory", "memory://"):
        from .memory import MemoryStore  # the default: loaded on first use all the same

        return MemoryStore(evict_at_most=evict_at_most)
    if url.startswith("sqlite://"):
        from .sqlite import SqliteStore  # only loaded when asked for

        return SqliteStore(sqlite_path(url), evict_at_most=evict_at_most)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore, check_url  # only loaded when asked for

        check_url(url)
        return RedisStore(url, prefix, timeout=timeout, evict_at_most=evict_at_most)
    raise ValueError(f"store {url!r} is not supported; use {STORE_URL_FORMS}")


__all__ = ["STORE_URL_FORMS", "masked_url", "open_store", "sqlite_path"]
