"""The one handler of the error root: every refusal (``EmulatorError``), Starlette's own and a
bug of ours render through ``EmulatorError.body``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import EmulatorError


def _render(exc: EmulatorError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers or None)


async def _emulator_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EmulatorError)
    return _render(exc)


_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    # Starlette's own refusals (unknown route, wrong method, bad multipart) in our body shape;
    # their headers (Allow on 405) are kept.
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    error = EmulatorError(
        str(exc.detail), status_code=exc.status_code, code=code, headers=exc.headers
    )
    return _render(error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug of ours: still the contract's body, never a bare traceback.
    error = EmulatorError(
        f"internal emulator error: {type(exc).__name__}", status_code=500, code="internal_error"
    )
    return _render(error)


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """The handlers `create_app` installs: every refusal renders through `EmulatorError.body`."""
    return {EmulatorError: _emulator_error, HTTPException: _http_error, Exception: _unexpected}
