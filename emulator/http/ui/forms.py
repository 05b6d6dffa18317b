"""A dashboard form read at the door: bounded, strict, every refusal naming its field.

Browsers send the dashboard's forms as ``application/x-www-form-urlencoded``; nothing else is
accepted. The body is read within ``MAX_FORM_BYTES`` before it is parsed, text must be valid
UTF-8 once percent-decoded, a field may come once, and numbers must be finite and written as
people write them (the rules' ranges are checked by whoever takes the value).
"""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl

from starlette.requests import Request

from ...core.checks import shown
from ...errors import InvalidRequest, UnsupportedMediaType
from ..bodies import read_body

FORM_TYPE = "application/x-www-form-urlencoded"
#: Largest form body: a fault rule's longest field (prompt_contains, 32000 characters) fits
#: even when every character is percent-encoded as UTF-8 (up to 12 bytes each).
MAX_FORM_BYTES = 512 * 1024
#: Most fields one form may have (the fault form has about twenty).
MAX_FORM_FIELDS = 64
_INTEGER = re.compile(r"[+-]?[0-9]{1,15}")
_NUMBER = re.compile(
    r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})(?:[eE][+-]?[0-9]{1,3})?"
)

Form = dict[str, str]


async def read_form(request: Request) -> Form:
    """The form's fields by name; 415, 413 or 400 naming the problem."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise UnsupportedMediaType(f"a dashboard form must be sent as {FORM_TYPE}")
    body = await read_body(request, MAX_FORM_BYTES)
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except UnicodeDecodeError:
        raise InvalidRequest(
            "a form must be percent-encoded ASCII that decodes to valid UTF-8"
        ) from None
    except ValueError:  # parse_qsl: more than max_num_fields
        raise InvalidRequest(f"a form may have at most {MAX_FORM_FIELDS} fields") from None
    form: Form = {}
    for name, value in pairs:
        if name in form:
            raise InvalidRequest(f"form field {shown(name)} was sent twice", field=name[:60])
        form[name] = value
    return form


def optional_text(form: Form, name: str) -> str | None:
    """The field's text with surrounding spaces removed; None when absent or blank."""
    value = form.get(name, "").strip()
    return value or None


def optional_int(form: Form, name: str) -> int | None:
    """A whole number typed in a field (None when blank); 400 naming it otherwise."""
    text = form.get(name, "").strip()
    if not text:
        return None
    if not _INTEGER.fullmatch(text):
        raise InvalidRequest(f"{name} must be a whole number, got {shown(text)}", field=name)
    return int(text)


def optional_number(form: Form, name: str) -> float | None:
    """A finite decimal number typed in a field (None when blank); 400 naming it otherwise."""
    text = form.get(name, "").strip()
    if not text:
        return None
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise InvalidRequest(
            f"{name} must be a finite decimal number such as 2 or 0.5, got {shown(text)}",
            field=name,
        )
    return value


__all__ = [
    "FORM_TYPE",
    "MAX_FORM_BYTES",
    "MAX_FORM_FIELDS",
    "Form",
    "optional_int",
    "optional_number",
    "optional_text",
    "read_form",
]
