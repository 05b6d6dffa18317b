"""One error root for everything the emulator refuses, and the one handler that renders it.

Task routes answer with the relay's envelope ``{"code", "message", "data": null}`` (SPEC D-2);
authentication failures answer with the OpenAI-style body ``{"error": {...}}`` (SPEC D-1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class EmulatorError(Exception):
    """Base of every refusal; ``status_code`` and ``code`` go straight into the response."""

    status_code: int = 400
    code: str = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of the task routes' error envelope."""
        return {"code": self.code, "message": self.message, "data": None}


class ConfigError(EmulatorError, ValueError):
    """A setting is unknown or has a bad value; the message names the key and its source."""

    # Under the one error root (a 400 when it reaches a route); still a ValueError for callers.


class InvalidRequest(EmulatorError):
    """A field breaks a rule; the message names the field and the rule."""


class ModelNotFound(EmulatorError):
    code = "model_not_found"


class Unauthorized(EmulatorError):
    """Missing, malformed or unknown bearer key (SPEC D-1): OpenAI-style body."""

    status_code = 401
    code = "invalid_api_key"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": "invalid_request_error", "code": self.code}
        }


class TaskNotFound(EmulatorError):
    status_code = 404
    code = "task_not_found"


class PayloadTooLarge(EmulatorError):
    status_code = 413
    code = "request_too_large"


class UnsupportedMediaType(EmulatorError):
    status_code = 415
    code = "unsupported_media_type"


class InsufficientQuota(EmulatorError):
    status_code = 403
    code = "insufficient_quota"


class RateLimited(EmulatorError):
    status_code = 429
    code = "rate_limited"


class StoreUnavailable(EmulatorError):
    """The shared store (Redis) cannot answer right now: 503, and the client may retry."""

    status_code = 503
    code = "service_unavailable"


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
