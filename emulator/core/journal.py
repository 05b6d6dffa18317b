"""The request journal's rules: secrets masked, long values cut, and the filters a journal is
queried with (``emulator.http.journal`` writes an entry per request)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .checks import shown
from .keys import mask_key
from .query import QueryError, unknown_parameter

#: Header values never journaled in full.
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-emulator-token", "proxy-authorization"})
_MAX_TEXT = 200
#: Fields of an object (a submission's body) the journal keeps; items of a list.
MAX_BODY_FIELDS = 40
_MAX_ITEMS = 20


class PendingEntry(Protocol):
    """A journal entry kept as the raw pieces of its request until the journal is read (the
    memory store: most entries are trimmed unread, so building them all would be waste).
    Everything it holds is immutable or its own copy, and no bigger than the entry."""

    def build(self) -> dict[str, Any]:
        """The entry (without ``seq``): a fresh dict per call, the same content every time."""
        ...


def mask_header(name: str, value: str) -> str:
    if name not in SECRET_HEADERS:
        return value
    scheme, sep, rest = value.partition(" ")
    if sep and scheme.lower() in ("bearer", "basic", "token"):
        return f"{scheme} {mask_key(rest.strip())}"
    return mask_key(value)


def _plain(value: Any) -> bool:
    """True when ``short`` would give ``value`` back unchanged (and it is not a container)."""
    if isinstance(value, str):
        return len(value) <= _MAX_TEXT and not value.startswith("data:")
    return not isinstance(value, list | dict)


def _flat(fields: dict[Any, Any]) -> bool:
    for key, value in fields.items():
        if not (isinstance(key, str) and len(key) <= _MAX_TEXT and _plain(value)):
            return False
    return True


def short(value: Any) -> Any:
    """``value`` as the journal keeps it: long text and data: URLs cut, containers bounded."""
    if isinstance(value, dict) and len(value) <= MAX_BODY_FIELDS and _flat(value):
        return dict(value)  # every ordinary submission: nothing to cut (a fast path)
    if isinstance(value, str):
        if value.startswith("data:"):
            return value[: value.find(",") + 1] + "…" if "," in value else "data:…"
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"
    if isinstance(value, list):
        return [short(v) for v in value[:_MAX_ITEMS]]
    if isinstance(value, dict):
        return {str(k)[:_MAX_TEXT]: short(v) for k, v in list(value.items())[:MAX_BODY_FIELDS]}
    return value


#: Unknown field names listed in one entry; how many more came is counted instead (D-13).
MAX_UNKNOWN_LISTED = 20


def listed(names: list[str]) -> tuple[list[str], int]:
    """At most ``MAX_UNKNOWN_LISTED`` of ``names`` (each cut like any text), and how many
    more there were: a body of 10,000 unknown keys must not make a 10,000-name entry."""
    shown = [short(name) for name in names[:MAX_UNKNOWN_LISTED]]
    return shown, len(names) - len(shown)


# -- filters ------------------------------------------------------------------------------
#: What the journal can be filtered on besides body fields (query parameters of
#: ``GET /_emulator/requests`` and keywords of the fixture's ``requests()``).
FILTERS = ("path", "method", "task_id", "endpoint", "status", "fault")
#: The endpoints the journal records.
ENDPOINTS = ("submit", "poll", "result")
_MAX_FILTER_TEXT = 2048
_MAX_BODY_FILTERS = MAX_BODY_FIELDS  # more could never all match
_METHOD = re.compile(r"[A-Za-z]{1,16}")
_BODY_PARAM = re.compile(r"body\[(.*)\]", re.S)


class JournalFilterError(QueryError):
    """A journal filter that is unknown or can never match; a 400 on the control plane, still
    a ValueError for the fixture's callers."""


def _text(value: Any) -> str:
    """How a body value is compared as text: strings as they are, anything else as compact
    JSON (so ``body[n]=2``, a query parameter, matches a JSON 2 and a multipart form's "2")."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def same_json(got: Any, wanted: Any) -> bool:
    """Whether two JSON values are equal as JSON: 2 is not "2", true is neither 1 nor "true",
    null only null; 2 and 2.0 are one number (as in JSON Schema); lists and objects item by
    item."""
    if isinstance(wanted, bool) or isinstance(got, bool):
        return isinstance(got, bool) and isinstance(wanted, bool) and got == wanted
    if isinstance(wanted, int | float):
        return isinstance(got, int | float) and got == wanted
    if isinstance(wanted, list | tuple):
        return (
            isinstance(got, list)
            and len(got) == len(wanted)
            and all(same_json(g, w) for g, w in zip(got, wanted, strict=True))
        )
    if isinstance(wanted, Mapping):
        return (
            isinstance(got, dict)
            and got.keys() == wanted.keys()
            and all(same_json(got[k], wanted[k]) for k in wanted)
        )
    return type(got) is type(wanted) and got == wanted  # text, null


def _form(entry: Mapping[str, Any]) -> bool:
    """Whether the entry's request sent a multipart form (its fields are text), not JSON."""
    kind = str((entry.get("headers") or {}).get("content-type", ""))
    return kind.partition(";")[0].strip().lower() == "multipart/form-data"


@dataclass(frozen=True, slots=True)
class BodyFilter:
    """One body field an entry must have: ``text`` (`_text` of the value) is what a form's
    field or, untyped, any field is compared with; ``typed``: a JSON body's field must equal
    ``value`` as JSON (`same_json`). A query parameter is text, so the control plane's
    filters are untyped; the fixture's keep their Python types."""

    name: str
    text: str
    value: Any = None
    typed: bool = False

    def matches(self, got: Any, form: bool) -> bool:
        if self.typed and not form:
            return same_json(got, self.value)
        return _text(got) == self.text


@dataclass(frozen=True, slots=True)
class JournalQuery:
    """Filters every one of which an entry must meet; none: every entry."""

    fields: tuple[tuple[str, str | int], ...] = ()
    body: tuple[BodyFilter, ...] = ()

    def matches(self, entry: Mapping[str, Any]) -> bool:
        for name, wanted in self.fields:
            value = entry.get(name)
            if name == "method":
                value = str(value or "").upper()
            if value != wanted:
                return False
        if self.body:
            fields = (entry.get("body") or {}).get("fields") or {}
            form = _form(entry)
            for field in self.body:
                if field.name not in fields or not field.matches(fields[field.name], form):
                    return False
        return True

    def select(self, entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [entry for entry in entries if self.matches(entry)]


def _field(name: str, value: Any) -> str | int:
    """The checked, normalised value of filter ``name`` (known), from a query or a keyword."""
    if name == "status":
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 3:
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 599:
            raise JournalFilterError(
                f"filter 'status' must be an integer from 0 (a dropped connection) to 599, "
                f"got {shown(value, 40)}",
                field="status",
            )
        return value
    if not isinstance(value, str) or len(value) > _MAX_FILTER_TEXT:
        raise JournalFilterError(
            f"filter {name!r} must be a string of at most {_MAX_FILTER_TEXT} characters",
            field=name,
        )
    if name == "endpoint" and value not in ENDPOINTS:
        raise JournalFilterError(
            f"filter 'endpoint' must be one of {', '.join(ENDPOINTS)}, got {shown(value, 40)}",
            field="endpoint",
        )
    if name == "method":
        if not _METHOD.fullmatch(value):
            raise JournalFilterError(
                f"filter 'method' must be an HTTP method name (letters only), "
                f"got {shown(value, 40)}",
                field="method",
            )
        return value.upper()
    return value


#: Longest filter text read as the JSON of a list or object: a flat list the journal keeps (20
#: items of 200 characters) fits with room for escapes. A bound on what parsing a filter may
#: cost: a longer text (only lists of lists kept whole could have one) is refused.
_MAX_JSON_FILTER_TEXT = 32 * 1024


def _keepable(value: Any) -> bool:
    """Whether a body value compared as ``_text(value)`` could be in an entry: the journal
    keeps it whole, or it is the JSON text of a list or object the journal keeps whole (a
    query parameter is always text, and ``images`` is a list)."""
    if short(value) == value:
        return True
    if not isinstance(value, str) or len(value) > _MAX_JSON_FILTER_TEXT:
        return False
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return False
    return isinstance(parsed, list | dict) and short(parsed) == parsed and _text(parsed) == value


def _body_value(label: str, value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        raise JournalFilterError(f"filter {shown(label)} must be a finite number", field=label)
    try:
        text = _text(value)
    except (TypeError, ValueError):
        raise JournalFilterError(
            f"filter {shown(label)} must be a JSON value (text, number, true/false, null, list)",
            field=label,
        ) from None
    # The journal cuts long strings and data: URLs; a value it would have cut can never
    # match, and a filter that silently matches nothing would pass `times=0` by mistake.
    if not _keepable(value):
        raise JournalFilterError(
            f"filter {shown(label)}: the journal keeps only the first {_MAX_TEXT} characters of a "
            "value and cuts data: URLs, so this value can never match; filter on a shorter one",
            field=label,
        )
    return text


def _body_name(label: str, name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > _MAX_TEXT or "[" in name or "]" in name:
        raise JournalFilterError(
            f"filter {shown(label)}: a body field name must be 1 to {_MAX_TEXT} characters "
            "without brackets",
            field=label,
        )
    return name


#: The query parameters of ``GET /_emulator/requests`` that choose its page, not filter it.
PAGE_PARAMETERS = ("limit", "after")


def _unknown(name: str, hint: str, paging: bool = False) -> QueryError:
    known = (*FILTERS, "body[<field>]", *(PAGE_PARAMETERS if paging else ()))
    return unknown_parameter(name, known, "journal parameter" if paging else "journal filter", hint)


def _query(fields: dict[str, str | int], body: dict[str, BodyFilter]) -> JournalQuery:
    if len(body) > _MAX_BODY_FILTERS:
        raise JournalFilterError(
            f"at most {_MAX_BODY_FILTERS} body fields can be filtered on", field="body"
        )
    return JournalQuery(tuple(fields.items()), tuple(body.values()))


def journal_params(items: Iterable[tuple[str, str]]) -> tuple[JournalQuery, dict[str, str]]:
    """A ``GET /_emulator/requests`` query: its filters (`query_from_params`) and its page's
    ``limit`` and ``after`` as given (each at most once; the page checks their values)."""
    paging: dict[str, str] = {}
    filters = []
    for key, value in items:
        if key not in PAGE_PARAMETERS:
            filters.append((key, value))
        elif key in paging:
            raise JournalFilterError(f"parameter {shown(key)} may be given only once", field=key)
        else:
            paging[key] = value
    return query_from_params(filters, paging=True), paging


def query_from_params(items: Iterable[tuple[str, str]], *, paging: bool = False) -> JournalQuery:
    """The filters of a ``GET /_emulator/requests`` query: ``endpoint=submit``,
    ``body[model]=NanoBanana`` (OpenAPI's deepObject form); each at most once. ``paging``:
    an unknown one's refusal names ``limit`` and ``after`` too."""
    fields: dict[str, str | int] = {}
    body: dict[str, BodyFilter] = {}
    for key, value in items:
        match = _BODY_PARAM.fullmatch(key)
        if key in FILTERS:
            if key in fields:
                raise JournalFilterError(f"filter {shown(key)} may be given only once", field=key)
            fields[key] = _field(key, value)
        elif match is not None:
            name = _body_name(key, match.group(1))
            if name in body:
                raise JournalFilterError(f"filter {shown(key)} may be given only once", field=key)
            body[name] = BodyFilter(name, _body_value(key, value))
        elif key == "body":
            raise JournalFilterError(
                "filter 'body' takes a field name: body[<field>]=value", field="body"
            )
        else:
            raise _unknown(key, "", paging)
    return _query(fields, body)


def query_from_filters(
    filters: Mapping[str, Any], body: Mapping[str, Any] | None = None
) -> JournalQuery:
    """The filters of the fixture's ``requests(endpoint="submit", body={"model": "X"})``: a
    body value keeps its type against a JSON body (`BodyFilter.typed`)."""
    fields: dict[str, str | int] = {}
    for key, value in filters.items():
        if key not in FILTERS:
            raise _unknown(key, f"; to filter on a body field, pass body={{{shown(key)}: ...}}")
        fields[key] = _field(key, value)
    if body is not None and not isinstance(body, Mapping):
        raise JournalFilterError("filter 'body' must map field names to values", field="body")
    wanted = {
        _body_name(f"body[{name}]", name): BodyFilter(
            name, _body_value(f"body[{name}]", value), value, typed=True
        )
        for name, value in (body or {}).items()
    }
    return _query(fields, wanted)
