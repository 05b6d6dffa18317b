"""State in Redis, shared by workers and hosts: the store (``store``), its Lua scripts
(``scripts``; the journal's and the fault rules' beside their methods, in ``journal`` and
``faults``), what is not a store operation (``support``), how concurrent script calls share
one connection's writes and reads (``pipe``) and how values are kept (``values``)."""

from __future__ import annotations

from .store import RedisStore, check_url

__all__ = ["RedisStore", "check_url"]
