"""Two answers compared by structure, like a snapshot test: what is expected to differ between
two services (or two runs of one) is replaced by a placeholder first, then every member,
type and value that remains must match.

Expected to differ, so never compared:

- ids: the task's own id on either side is ``<task id>`` wherever it stands; the value of any
  other member named like an id (``id``, ``task_id``, ``…_id``, ``…_ids``) is ``<id (text)>``.
  Only by name: a text that merely looks like an id (an error code ``task_not_found``) is
  compared;
- times: members named ``time``, ``timestamp``, ``date``, ``…_at``, ``…_time``, by the JSON type
  of their value (``<time (number)>``): a time that turns from a number into a text differs;
- URLs: only their file type is compared (``<url .png>``): hosts, paths and queries name where
  a picture is stored, not what it is;
- human text: ``message`` members that are text (wording is the service's own);
- progress while a task runs (how far it is depends on when it was asked), also by type
  (``<progress (text)>``); compared once the task has ended.

A placeholder keeps the JSON type of what it replaces, so a value that changes type is always a
difference.

``--ignore PATH`` adds members (dotted paths, ``*`` for any one step, e.g. ``data.metadata.*``).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any
from urllib.parse import urlsplit

_TIME_NAME = re.compile(r"^(time|timestamp|date)$|_at$|_time$")
_ID_NAME = re.compile(r"^(id|ids)$|_ids?$")
_EXTENSION = re.compile(r"\.([0-9A-Za-z]{1,5})$")


def _url(text: str) -> str:
    try:
        path = urlsplit(text).path
    except ValueError:
        return "<url>"
    found = _EXTENSION.search(path)
    return f"<url .{found.group(1).lower()}>" if found else "<url>"


def _type(value: Any) -> str:
    """The JSON type of a replaced value (a text or a number: nothing else is replaced)."""
    return "text" if isinstance(value, str) else "number"


def normalize(value: Any, ids: frozenset[str], *, running: bool = False, key: str = "") -> Any:
    """``value`` with what is expected to differ replaced by placeholders."""
    if isinstance(value, dict):
        return {k: normalize(v, ids, running=running, key=str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, ids, running=running, key=key) for v in value]
    if isinstance(value, str) and value in ids:
        return "<task id>"
    if value is None or isinstance(value, bool):
        return value  # a null or a flag where a time or an id stood is itself a difference
    if _TIME_NAME.search(key):
        return f"<time ({_type(value)})>"
    if key == "progress" and running:
        return f"<progress ({_type(value)})>"
    if _ID_NAME.search(key):
        return f"<id ({_type(value)})>"
    if isinstance(value, str):
        if key == "message":
            return "<text>"
        if value.startswith(("http://", "https://")):
            return _url(value)
    return value


def ignored(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def _short(value: Any) -> str:
    text = "nothing" if value is _MISSING else repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


_MISSING = object()


def diff(recorded: Any, target: Any, patterns: tuple[str, ...] = (), path: str = "") -> list[str]:
    """Every difference between two normalized values, one line each, by member path."""
    where = path or "(body)"
    if ignored(where, patterns):
        return []
    if isinstance(recorded, dict) and isinstance(target, dict):
        lines = []
        for name in [*recorded, *(k for k in target if k not in recorded)]:
            child = f"{path}.{name}" if path else str(name)
            left, right = recorded.get(name, _MISSING), target.get(name, _MISSING)
            if left is _MISSING or right is _MISSING:
                if not ignored(child, patterns):
                    lines.append(
                        f"{child}: the recording has {_short(left)}, the target {_short(right)}"
                    )
                continue
            lines += diff(left, right, patterns, child)
        return lines
    if isinstance(recorded, list) and isinstance(target, list):
        if len(recorded) != len(target):
            return [f"{where}: the recording has {len(recorded)} item(s), the target {len(target)}"]
        lines = []
        for i, (left, right) in enumerate(zip(recorded, target, strict=True)):
            lines += diff(left, right, patterns, f"{path}[{i}]")
        return lines
    if type(recorded) is not type(target) or recorded != target:
        return [f"{where}: the recording has {_short(recorded)}, the target {_short(target)}"]
    return []


__all__ = ["diff", "ignored", "normalize"]
