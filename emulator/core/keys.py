"""How an API key is named without being kept: a fingerprint owns tasks and balances, a masked
form is shown (journal, usage, balances); the key itself is never stored or shown."""

from __future__ import annotations

import functools
import hashlib


@functools.lru_cache(maxsize=1024)
def key_fingerprint(api_key: str) -> str:
    """A stable, non-reversible name for an API key (tasks are owned by it, never by the key).

    Remembered: a hash per request is a measurable share of a poll, and every task of a key
    then shares one owner string.
    """
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:24]


def mask_key(key: str) -> str:
    """Enough of a key to tell keys apart, never enough to use it: ``sk-t…key``."""
    if len(key) <= 8:
        return "…" if len(key) <= 2 else key[:1] + "…" + key[-1:]
    return f"{key[:4]}…{key[-3:]}"


__all__ = ["key_fingerprint", "mask_key"]
