"""Fault effects at the HTTP level: delays and refusals before an answer, answers mangled after
the work was done, and a connection dropped without an answer (the fault rules that decide
them: ``emulator.core.faults``)."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ..core.answers import answer
from ..core.faults import FaultRule
from ..errors import EmulatorError

#: What a truncated ("malformed") answer looks like: valid start, cut mid-object.
MALFORMED_BODY = b'{"code":"success","message":"","data":{"task_id":"task_'


class DropConnection(BaseException):
    """Close the client's connection without an answer (a fault effect).

    A BaseException so no Starlette middleware turns it into a 500 on the way out.
    """


async def hold(request: Request, seconds: float) -> None:
    """Hold the answer until the client gives up (then answer nothing) or ``seconds`` pass."""
    with anyio.move_on_after(seconds):
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise DropConnection("client gave up on a hung response")


async def before(request: Request, rule: FaultRule | None, latency: float) -> Response | None:
    """Delays and refusals that come before the answer; the rule's own answer (``respond``),
    to be sent instead of the route's, or None."""
    if latency > 0:
        await anyio.sleep(latency)
    if rule is None:
        return None
    request.state.fault = rule.id
    effect = rule.effect
    if effect.kind == "latency" and effect.seconds:
        await anyio.sleep(effect.seconds)
    elif effect.kind == "hang":
        cap = request.app.state["emulator"].config.settings.hang_max_seconds
        await hold(request, cap if effect.seconds is None else min(cap, effect.seconds))
    elif effect.kind == "http_error":
        status = effect.status or 500
        headers = {"Retry-After": str(effect.retry_after)} if effect.retry_after is not None else {}
        raise EmulatorError(
            effect.message or f"injected fault: HTTP {status}",
            status_code=status,
            code=effect.code,
            headers=headers,
        )
    elif effect.kind == "drop":
        raise DropConnection(f"fault rule {rule.id!r} dropped the connection")
    elif effect.kind == "respond":
        content, extra = answer(effect.json, effect.body, effect.headers)
        response = Response(content, status_code=effect.status or 200)
        # Appended raw: Starlette's ``headers=`` would add a second Content-Type.
        response.raw_headers += [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra
        ]
        return response
    return None


def after(rule: FaultRule | None, response: Response) -> Response:
    """Answers mangled after the work was done (the task exists; the client cannot tell)."""
    if rule is not None and rule.effect.kind == "malformed":
        return Response(
            MALFORMED_BODY, status_code=response.status_code, media_type="application/json"
        )
    if rule is not None and rule.effect.kind == "empty":
        return Response(b"", status_code=response.status_code, media_type="application/json")
    return response


__all__ = ["MALFORMED_BODY", "DropConnection", "after", "before", "hold"]
