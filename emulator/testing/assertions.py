"""What the fixture's ``assert_requested`` says when it fails: the journal's entries closest
to what was asserted (as WireMock's near misses), and its checks of ``times``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..core.journal import JournalQuery

#: Entries a failure lists at most, and how long a body it shows.
MAX_SHOWN = 5
_MAX_BODY_TEXT = 160


def check_times(times: object) -> int | None:
    """``times`` of ``assert_requested``: None (at least one) or an integer >= 0; a TypeError
    or ValueError naming it otherwise (``assert_requested("submit")`` would else read as
    "expected submit", and ``times=-1`` could never be met)."""
    if times is None:
        return None
    if not isinstance(times, int) or isinstance(times, bool):
        raise TypeError(
            f"assert_requested: times must be an integer >= 0 or None (at least one), got "
            f"{times!r:.60}; filters are keywords: assert_requested(endpoint='submit')"
        )
    if times < 0:
        raise ValueError(f"assert_requested: times must be an integer >= 0, got {times}")
    return times


def _differences(query: JournalQuery, entry: Mapping[str, Any]) -> list[str]:
    """What of ``query`` the entry does not meet, each as ``name=its value``."""
    found = []
    for name, wanted in query.fields:
        value = entry.get(name)
        if (str(value or "").upper() if name == "method" else value) != wanted:
            found.append(f"{name}={value!r}")
    fields = (entry.get("body") or {}).get("fields") or {}
    for field in query.body:
        if not JournalQuery(body=(field,)).matches(entry):
            got = fields.get(field.name, "<absent>")
            found.append(f"body[{field.name}]={got!r:.60}")
    return found


def _summary(entry: Mapping[str, Any]) -> str:
    body = (entry.get("body") or {}).get("fields")
    text = "" if body is None else json.dumps(body, ensure_ascii=False, default=str)
    if len(text) > _MAX_BODY_TEXT:
        text = text[:_MAX_BODY_TEXT] + "…"
    fault = f" fault={entry['fault']}" if entry.get("fault") else ""
    shown = (
        f"#{entry.get('seq')} {entry.get('method')} {entry.get('path')} -> {entry.get('status')}"
    )
    return shown + fault + (f" body={text}" if text else "")


def near_misses(query: JournalQuery, entries: list[dict[str, Any]], where: str) -> str:
    """Lines naming the entries of ``entries`` (the newest of the journal, of ``where``) that
    come closest to meeting ``query``: fewest unmet filters first, then newest."""
    ranked = []
    for entry in entries:
        differs = _differences(query, entry)
        ranked.append((len(differs), -int(entry.get("seq") or 0), entry, differs))
    ranked.sort(key=lambda item: item[:2])
    if not ranked:
        return f"\nThe journal holds no request {where}."
    lines = [f"\nClosest of the {len(entries)} newest journal entries {where}:"]
    for _, _, entry, differs in ranked[:MAX_SHOWN]:
        why = f"  (differs: {', '.join(differs)})" if differs else "  (matches)"
        lines.append(f"  {_summary(entry)}{why}")
    return "\n".join(lines)


__all__ = ["MAX_SHOWN", "check_times", "near_misses"]
