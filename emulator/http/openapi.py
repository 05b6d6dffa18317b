"""The routes that serve the OpenAPI contracts, as written (YAML) and as JSON: ``/openapi.yaml``
and ``/openapi.json`` (the real API), ``/_emulator/openapi.yaml`` and ``.json`` (the emulator's
own routes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..contract import ContractName, contract_json, contract_text


def _serve(name: ContractName, as_json: bool) -> Route:
    async def handler(request: Request) -> Response:
        if as_json:
            return Response(contract_json(name), media_type="application/json")
        # Starlette's Python 3.11 mimetypes does not know YAML: name the type explicitly.
        return Response(contract_text(name), media_type="application/yaml")

    suffix = "json" if as_json else "yaml"
    prefix = "" if name == "image-tasks" else "/_emulator"
    return Route(f"{prefix}/openapi.{suffix}", handler, methods=["GET"])


def routes() -> list[BaseRoute]:
    """Public routes (no key, like any API's published spec) serving both contracts."""
    names: tuple[ContractName, ...] = ("image-tasks", "emulator")
    return [_serve(name, as_json) for name in names for as_json in (False, True)]


__all__ = ["routes"]
