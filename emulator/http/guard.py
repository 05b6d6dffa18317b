"""What every control-plane route shares: finding its emulator, the admin token, and reading
a JSON body at the door."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ..core.checks import unknown_fields_problem
from ..errors import EmulatorError, InvalidRequest
from .bodies import parse_json, read_body

if TYPE_CHECKING:
    from ..usecases.emulator import Emulator

Handler = Callable[[Request], Awaitable[Response]]
#: Largest body a control-plane request may have (also never more than max_body_bytes).
MAX_CONTROL_BODY_BYTES = 1024 * 1024


def emulator_of(request: Request) -> Emulator:
    # Item access: ``State.__getattr__`` runs only after the normal lookup has failed and
    # raised, which costs several µs, and every request asks for its emulator. The app read
    # from the scope, as the ``request.app`` property does, without the property's call.
    emulator: Emulator = request.scope["app"].state["emulator"]
    return emulator


def is_admin(request: Request) -> bool:
    """Whether the caller may use the control plane: no ``admin_token`` is set, or the request
    carries it in ``X-Emulator-Token`` (compared in constant time)."""
    token = emulator_of(request).settings.admin_token
    given = request.headers.get("x-emulator-token", "")
    # latin-1: the bytes as sent (the token itself is visible ASCII, checked at start-up).
    return not token or secrets.compare_digest(given.encode("latin-1"), token.encode("latin-1"))


def guarded(handler: Handler) -> Handler:
    """Require ``X-Emulator-Token`` when the ``admin_token`` setting is set."""

    async def run(request: Request) -> Response:
        if not is_admin(request):
            # Which of the two: a missing header is set-up, a wrong one a different token
            # (another emulator's, a stale one); the token itself is never echoed.
            why = (
                "the X-Emulator-Token header does not match the admin_token setting"
                if "x-emulator-token" in request.headers
                else "the control plane needs the X-Emulator-Token header (setting admin_token)"
            )
            raise EmulatorError(
                why, status_code=401, code="admin_token_required", field="X-Emulator-Token"
            )
        await emulator_of(request).start()
        return await handler(request)

    return run


async def json_body(request: Request, empty: Any = None) -> Any:
    """The request's JSON, checked at the door like a submission's (size, values, depth, NaN
    and Infinity, 4300-digit integers, lone surrogates); ``empty`` when there is no body."""
    settings = emulator_of(request).settings
    body = await read_body(request, min(settings.max_body_bytes, MAX_CONTROL_BODY_BYTES))
    if empty is not None and not body.strip():
        return empty
    return parse_json(body, settings.max_json_depth, settings.max_json_items)


async def json_object(request: Request, known: Collection[str] | None) -> dict[str, Any]:
    """The request's JSON object (``{}`` when there is no body), refusing a field not in
    ``known`` by name, as a fault rule does: a misspelt field is never taken for one not
    given. ``known`` None: the caller names what it refuses itself (PATCH's settings)."""
    body = await json_body(request, empty={})
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    problem = None if known is None else unknown_fields_problem(body, known)
    if problem is not None:
        first = min(set(body) - set(known or ()))
        raise InvalidRequest(f"request body {problem}", field=first)
    return body


__all__ = [
    "MAX_CONTROL_BODY_BYTES",
    "Handler",
    "emulator_of",
    "guarded",
    "is_admin",
    "json_body",
    "json_object",
]
