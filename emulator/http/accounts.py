"""The control plane's view of billing: the usage log and the balances per key."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..core.checks import MAX_TEXT_CHARS, text_problem
from ..core.journal import mask_key
from ..errors import InvalidRequest
from ..usecases.emulator import key_fingerprint
from .guard import emulator_of, guarded, json_object


@guarded
async def get_usage(request: Request) -> Response:
    emulator = emulator_of(request)
    await emulator.settle_due()
    params = request.query_params
    charges = await emulator.store.list_charges()
    if "key" in params:
        owner = key_fingerprint(params["key"])
        charges = [c for c in charges if c.owner == owner]
    for name in ("model", "state", "task_id"):
        if name in params:
            charges = [c for c in charges if getattr(c, name) == params[name]]
    return JSONResponse(
        {
            "unit": emulator.prices.unit,
            "entries": [c.to_dict() for c in charges],
            "totals": await emulator.usage_totals(charges, params),
        }
    )


@guarded
async def list_balances(request: Request) -> Response:
    emulator = emulator_of(request)
    await emulator.settle_due()
    balances = await emulator.store.list_balances()
    return JSONResponse(
        {
            "unit": emulator.prices.unit,
            "balances": [{"key": label, "balance": amount} for label, amount in balances.values()],
        }
    )


@guarded
async def put_balance(request: Request) -> Response:
    emulator = emulator_of(request)
    key = request.path_params["key"]
    problem = text_problem(key, MAX_TEXT_CHARS)
    if problem is not None:
        raise InvalidRequest(f"key {problem}", field="key")
    amount = (await json_object(request)).get("balance", ...)
    if isinstance(amount, float) and amount.is_integer():
        amount = int(amount)  # 51.0 is a whole number in JSON
    if amount is not None and (
        not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= 10**15
    ):
        raise InvalidRequest(
            "balance must be a whole number of credits >= 0, or null for unlimited",
            field="balance",
        )
    await emulator.set_balance(key, amount)  # one store step: settles what ended, then sets
    return JSONResponse({"key": mask_key(key), "balance": amount})


__all__ = ["get_usage", "list_balances", "put_balance"]
