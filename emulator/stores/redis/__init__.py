"""State in Redis, shared by workers and hosts: the store (``store``), its Lua scripts
(``scripts``) and what is not a store operation (``support``)."""

from __future__ import annotations

from .store import RedisStore, check_url

__all__ = ["RedisStore", "check_url"]
