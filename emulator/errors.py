"""One error root for everything the emulator refuses (its one handler, which renders it, is
``emulator.http.errors``).

Task routes answer with the relay's envelope ``{"code", "message", "data": null}`` (SPEC D-2);
authentication failures answer with the OpenAI-style body ``{"error": {...}}`` (SPEC D-1).
Nothing here knows HTTP beyond a status code: every layer may raise these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
    """The store cannot answer right now (Redis down or slow; a SQLite file full, locked by
    another process or failing to write): 503, and the client may retry."""

    status_code = 503
    code = "service_unavailable"
