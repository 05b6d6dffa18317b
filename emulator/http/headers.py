"""A request header read straight from the ASGI scope.

Starlette's ``request.headers`` builds a ``Headers`` object on first use (~9k instructions with
a lookup), and the hot routes need only one or two headers of a request: the Host, the
Authorization, the body's Content-Type and Content-Length.
"""

from __future__ import annotations

from starlette.types import Scope


def first_header(scope: Scope, name: bytes) -> bytes | None:
    """The value of the first header called ``name`` (lower case, as ASGI names are and as
    Starlette compares them), as sent; None when there is none: what
    ``request.headers.get(name)`` gives, undecoded."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


__all__ = ["first_header"]
