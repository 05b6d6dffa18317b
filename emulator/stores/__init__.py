"""Where state lives: the interface every backend keeps (``base``, each method's atomicity
promise written on it), one subpackage per backend (``memory``, ``sqlite``, ``redis``) and the
factory that opens the one a store URL names (``factory``)."""

from __future__ import annotations

from .base import Expiry, Forced, Now, Placed, Store
from .factory import masked_url, open_store

__all__ = ["Expiry", "Forced", "Now", "Placed", "Store", "masked_url", "open_store"]
