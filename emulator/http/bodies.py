"""Request bodies of a submission: read within the size limit, parsed into plain fields.

JSON and ``multipart/form-data`` both become a dict of fields (and a list of uploaded files);
anything that is not a well-formed body, or that could not be stored and shown again (NaN,
4300-digit integers, lone surrogates, deep nesting), is a 400 here, before any rule about
what the fields mean (``emulator.usecases.submission``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncGenerator
from typing import Any

from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ..config import Settings
from ..core.checks import encodable, shown
from ..errors import InvalidRequest
from ..usecases.submission import FIELDS
from .privates import read_body

#: The text fields of a submission (the request fields but the pictures, which are files or
#: URLs); a repeated one is refused, other repeated fields ignored.
FORM_FIELDS = FIELDS - {"image", "images"}
#: A multipart integer: an optional minus and at most 9 ASCII digits ("--1" is not one).
_FORM_INTEGER = re.compile(r"-?[0-9]{1,9}")


def _reject_constant(name: str) -> Any:
    raise InvalidRequest(f"request body holds {name}, which is not a JSON number")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)  # in C; a repeated name leaves fewer entries than pairs
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _ in pairs:  # the first name met again, as a loop that stops there would say
        if key in seen:
            raise InvalidRequest(f"field {shown(key)} appears more than once", field=key)
        seen.add(key)
    raise AssertionError("unreachable: fewer names than pairs means one repeats")


#: Bytes scanned per C call when counting (about a millisecond each).
_SLICE = 1 << 20
#: A JSON string (skipped whole) or one structural character outside strings.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[,:\[{]')


def _rough_count(body: bytes) -> int:
    """Commas, colons and openings anywhere in ``body``, counted a megabyte at a time (a
    worker thread parsing a big body then lets the event loop run between slices)."""
    count = 0
    for start in range(0, len(body), _SLICE):
        end = start + _SLICE
        for char in b",:[{":
            count += body.count(char, start, end)
    return count


def check_structure(body: bytes, max_items: int) -> None:
    """400 when ``body`` holds more than ``max_items`` JSON values and member names, counted
    before parsing: parsing millions of tiny values costs seconds and gigabytes, while a
    legitimate body is large only because of a few long strings (base64 data: URLs).

    Values and names number at most commas + colons + openings + 1 outside strings. Counted
    with C-speed ``bytes.count`` first (an upper bound: it counts inside strings too); only when
    that bound is passed are strings skipped, with a scan that stops at the limit.
    """
    if len(body) < max_items or _rough_count(body) < max_items:
        return  # the count is at most one per byte: a short body needs none
    items, strings = 1, 0
    for token in _TOKEN.finditer(body):
        if token.end() - token.start() == 1:
            items += 1
        else:
            strings += 1  # each string is a value or a name: as many as items in valid JSON
        if items > max_items or strings > max_items:
            raise InvalidRequest(
                f"request body holds more than the limit of {max_items} JSON values and "
                "names (max_json_items)"
            )


def _check_shape(data: Any, max_depth: int) -> None:
    """400 when the parsed body nests deeper than ``max_depth``, holds text that cannot be
    encoded (a lone UTF-16 surrogate such as ``"\\ud800"``: valid JSON, but not Unicode), or
    a number beyond a double's range (``1e999``: valid JSON, parsed as an infinity that no
    JSON answer, journal entry or store can write again).
    """
    if max_depth >= 1 and isinstance(data, dict) and _flat_and_encodable(data):
        return  # every ordinary submission: one level, plain values (a fast path)
    _check_finite(data, "")
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if depth > max_depth:
            raise InvalidRequest(f"request body is nested deeper than {max_depth} levels")
        pairs: list[tuple[str, Any]]
        if isinstance(item, dict):
            pairs = [(f"{path}.{k}" if path else k, v) for k, v in item.items()]
            keys = list(item)
        elif isinstance(item, list):
            pairs = [(f"{path}[{i}]", v) for i, v in enumerate(item)]
            keys = []
        else:
            continue
        for text in keys + [v for _, v in pairs if isinstance(v, str)]:
            if not encodable(text):
                field = next((p for p, v in pairs if v is text), path or None)
                raise InvalidRequest(
                    f"{field or 'a field name'} is not valid Unicode: it contains a lone "
                    "surrogate (\\ud800-\\udfff)",
                    field=field,
                )
        for p, v in pairs:
            _check_finite(v, p)
        stack.extend((v, depth + 1, p) for p, v in pairs if isinstance(v, dict | list))


def _check_finite(value: Any, field: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(
            f"{field or 'request body'} is a number beyond the range of a JSON number "
            "(a double: at most about 1.8e308 in size)",
            field=field or None,
        )


def _flat_and_encodable(data: dict[str, Any]) -> bool:
    """True when no value is an object or array, every number is finite, and every name and
    text encodes (else the slow path finds which field is wrong). ASCII text
    always does (``str.isascii`` is O(1)); the rest is encoded joined, once (the joined text
    encodes exactly when each piece does: UTF-8 refuses every surrogate)."""
    # One loop, no comprehension (a frame of its own) and a constant tuple, not ``dict | list``
    # (a union built per value): 4.3k -> 2.9k instructions for a two-field body (callgrind).
    wide = []
    for key, value in data.items():
        if not key.isascii():
            wide.append(key)
        if isinstance(value, str):
            if not value.isascii():
                wide.append(value)
        elif isinstance(value, (dict, list)):
            return False
        elif isinstance(value, float) and not math.isfinite(value):
            return False  # 1e999 parses as an infinity
    return not wide or encodable("".join(wide))


#: One decoder for the process: ``json.loads`` with hooks builds a decoder (and its scanner)
#: per call. Decoding bytes as ``json.loads`` does (``detect_encoding``, surrogatepass) keeps
#: every answer the same.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
#: JSON's white space (RFC 8259): what may follow a document (``str.isspace`` takes more).
_JSON_SPACE = " \t\n\r"


def parse_json(body: bytes, max_depth: int, max_items: int) -> Any:
    """The JSON value of ``body``, or a 400 naming what makes it unacceptable: bad JSON, too
    many values (checked before parsing), too deep, NaN or Infinity, a 4300-digit integer, a
    repeated name, a lone surrogate anywhere."""
    if body[:1] == b"{" and body[1:2] != b"\0":
        encoding = "utf-8"  # what detect_encoding says of a "{" not followed by NUL
    elif not body.strip():
        raise InvalidRequest("request body is empty; send a JSON object")
    else:
        encoding = json.detect_encoding(body)
    check_structure(body, max_items)
    try:
        text = body.decode(encoding, "surrogatepass")
        if text[:1] == "{":
            # What decode does with no leading white space, without its two regex scans
            # (13.7k -> 8.3k instructions for a two-field body): the same parse, and the
            # same error when more than JSON white space follows (decode raises it again).
            data, end = _DECODER.raw_decode(text)
            if end != len(text) and text[end:].strip(_JSON_SPACE):
                data = _DECODER.decode(text)  # raises: "Extra data"
        else:
            data = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply") from None
    except ValueError:  # what json raises beyond JSONDecodeError: an integer of 4300+ digits
        raise InvalidRequest("request body holds a number with too many digits") from None
    _check_shape(data, max_depth)
    return data


def fields_from_json(body: bytes, max_depth: int, max_items: int) -> dict[str, Any]:
    data = parse_json(body, max_depth, max_items)
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    return data


async def fields_from_multipart(
    headers: Headers, body: bytes, settings: Settings
) -> tuple[dict[str, Any], list[UploadFile], list[str]]:
    """The submission's fields, its picture files, and the names of the fields it ignored
    (D-13), in order. Text ``image`` parts (there may be several) are gathered under
    ``image_urls``; a client's own part of that name is an unknown field, never mistaken
    for them."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        headers,
        stream(),
        max_files=settings.max_reference_images,
        max_fields=settings.max_form_fields,
        max_part_size=max(1024 * 1024, settings.max_prompt_chars * 4),
    )
    try:
        form: FormData = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"multipart body is malformed: {exc.message}") from None
    fields: dict[str, Any] = {}
    files: list[UploadFile] = []
    urls: list[str] = []
    unknown: list[str] = []
    for key, value in form.multi_items():
        if key not in FIELDS and key not in ("images[]", *unknown):
            unknown.append(key)
        if isinstance(value, UploadFile):
            if key != "image":
                raise InvalidRequest(
                    f"file part {shown(key)} is not accepted; upload pictures as 'image'", field=key
                )
            files.append(value)
        elif key in ("images", "images[]"):
            fields.setdefault("images", []).append(value)
        elif key == "image":
            urls.append(value)
        elif key == "image_urls":
            continue  # ours for the text image parts below; the client's is ignored, listed
        elif key in fields:
            if key not in FORM_FIELDS:
                continue  # unknown fields are ignored however often they come, like JSON keys
            raise InvalidRequest(f"field {shown(key)} appears more than once", field=key)
        else:
            fields[key] = value
    if "n" in fields:
        text = fields["n"].strip()
        if _FORM_INTEGER.fullmatch(text) is None:
            raise InvalidRequest(f"n must be an integer, got {shown(fields['n'])}", field="n")
        fields["n"] = int(text)
    if urls:
        fields["image_urls"] = urls
    return fields, files, unknown


__all__ = [
    "FORM_FIELDS",
    "check_structure",
    "fields_from_json",
    "fields_from_multipart",
    "parse_json",
    "read_body",
]
