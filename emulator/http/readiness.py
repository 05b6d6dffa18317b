"""``/healthz``: the conventional readiness probe (Kubernetes, load balancers, compose files).

Not part of the real API's contract (it is in the emulator's), outside ``/_emulator`` so a
probe needs no knowledge of the emulator, open without a key or the admin token, not
journaled (probes would fill the journal), and cheap: one ping of the store (nothing for
memory and SQLite, one round trip to Redis). ``/_emulator/health`` says more.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import StoreUnavailable


async def healthz(request: Request) -> Response:
    try:
        await request.app.state.emulator.store.ping()
    except StoreUnavailable:
        return JSONResponse({"status": "store_unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


def routes() -> list[BaseRoute]:
    return [Route("/healthz", healthz, methods=["GET"])]


__all__ = ["healthz", "routes"]
