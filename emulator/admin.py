"""The control plane under ``/_emulator``: what only the emulator has, never under ``/v1``."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .app import Emulator, key_fingerprint
from .clock import ManualClock
from .config import ConfigError, Settings
from .errors import EmulatorError, InvalidRequest, StoreUnavailable
from .expiry import is_expired
from .faults import FaultError, parse_rule
from .journal import mask_key
from .store import masked_url
from .tasks import Task

#: Settings that cannot change while serving (they shape the process or the state).
FIXED_SETTINGS = frozenset(
    {"host", "port", "seed", "clock", "faults", "fault_file", "render_cache_bytes", "price_file"}
    # Whoever can reach the control plane must not be able to open the network fences.
    | {"admin_token", "fetch_reference_urls", "fetch_allow_hosts", "fetch_allow_private"}
    # The store is opened once, at start-up.
    | {"store", "state_dir", "store_prefix"}
)
Handler = Callable[[Request], Awaitable[Response]]


def _emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


def guarded(handler: Handler) -> Handler:
    """Require ``X-Emulator-Token`` when the ``admin_token`` setting is set."""

    async def run(request: Request) -> Response:
        token = _emulator(request).settings.admin_token
        given = request.headers.get("x-emulator-token", "")
        if token and not secrets.compare_digest(given.encode(), token.encode()):
            raise EmulatorError(
                "the control plane needs the X-Emulator-Token header (setting admin_token)",
                status_code=401,
                code="admin_token_required",
            )
        await _emulator(request).start()
        return await handler(request)

    return run


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, RecursionError):  # also 4300-digit integers and deep nesting
        raise InvalidRequest("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def settings_json(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "faults":
            value = [rule.to_dict() for rule in value]
        elif f.name == "admin_token" and value:
            value = "***"
        elif f.name == "api_keys":
            value = [mask_key(key) for key in value]  # the control plane never shows a key
        elif f.name == "store":
            value = masked_url(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


# -- health, reset, config, clock ---------------------------------------------------------
async def health(request: Request) -> Response:
    emulator = _emulator(request)
    settings = emulator.settings
    store = emulator.store
    # A shared store (Redis) may be away: say so, with 503, so a load balancer can tell.
    report: dict[str, Any] = {"backend": type(store).__name__.removesuffix("Store").lower()}
    try:
        await store.ping()
        report["ok"] = True
    except StoreUnavailable as exc:
        report |= {"ok": False, "error": exc.message}
    if isinstance(getattr(store, "round_trips", None), int):
        report["round_trips"] = getattr(store, "round_trips")  # noqa: B009 - optional counter
    return JSONResponse(
        {
            "status": "ok" if report["ok"] else "store_unavailable",
            "clock": settings.clock,
            "seed": emulator.seed,
            "envelope": settings.envelope,
            "store": report,
        },
        status_code=200 if report["ok"] else 503,
    )


@guarded
async def reset(request: Request) -> Response:
    await _emulator(request).reset()
    return JSONResponse({"status": "reset"})


@guarded
async def get_config(request: Request) -> Response:
    return JSONResponse(settings_json(_emulator(request).settings))


@guarded
async def patch_config(request: Request) -> Response:
    emulator = _emulator(request)
    changes = await _json_object(request)
    fixed = sorted(set(changes) & FIXED_SETTINGS)
    if fixed:
        raise InvalidRequest(
            f"setting {fixed[0]!r} cannot change while serving; restart with it instead",
            field=fixed[0],
        )
    try:
        settings = emulator.settings.replace(**changes)
        emulator.reconfigure(settings)
    except (ConfigError, ValueError, OSError) as exc:  # OSError: a table file that won't open
        raise InvalidRequest(str(exc)) from None
    return JSONResponse(settings_json(settings))


@guarded
async def get_clock(request: Request) -> Response:
    emulator = _emulator(request)
    return JSONResponse({"mode": emulator.settings.clock, "now": await emulator.clock.now()})


@guarded
async def advance_clock(request: Request) -> Response:
    emulator = _emulator(request)
    clock = emulator.clock
    if not isinstance(clock, ManualClock):
        raise EmulatorError(
            f"the clock is {emulator.settings.clock!r}; only the manual clock can be advanced",
            status_code=409,
            code="clock_not_manual",
        )
    seconds = (await _json_object(request)).get("seconds")
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= 10**9
    ):
        raise InvalidRequest("seconds must be a number between 0 and 1e9", field="seconds")
    return JSONResponse({"mode": "manual", "now": await clock.advance(float(seconds))})


# -- tasks --------------------------------------------------------------------------------
async def _task_view(request: Request, emulator: Emulator, task_id: str) -> dict[str, Any]:
    return await _view(request, emulator, await emulator.find(None, task_id))


async def _view(request: Request, emulator: Emulator, task: Task) -> dict[str, Any]:
    obs = await emulator.observe(task)
    base = str(request.base_url)
    return {
        "task": task.to_dict(),
        "status": obs.status,
        "progress": f"{obs.progress}%",
        "elapsed": await emulator.elapsed(task),
        "result_urls": emulator.results.urls(task, base) if obs.status == "succeeded" else [],
    }


@guarded
async def list_tasks(request: Request) -> Response:
    emulator = _emulator(request)
    want_status = request.query_params.get("status")
    want_model = request.query_params.get("model")
    views = []
    for task in await emulator.store.list_tasks():
        if (want_model and task.model != want_model) or await is_expired(emulator, task):
            continue  # an expired task is gone, swept or not (as the task route says)
        view = await _view(request, emulator, task)
        if want_status and view["status"] != want_status:
            continue
        views.append(view)
    return JSONResponse({"tasks": views})


@guarded
async def get_admin_task(request: Request) -> Response:
    emulator = _emulator(request)
    return JSONResponse(await _task_view(request, emulator, request.path_params["task_id"]))


@guarded
async def force_outcome(request: Request) -> Response:
    emulator = _emulator(request)
    body = await _json_object(request)
    status = body.get("status")
    if status not in ("succeeded", "failed"):
        raise InvalidRequest("status must be succeeded or failed", field="status")
    code, message = body.get("code"), body.get("message")
    for name, value in (("code", code), ("message", message)):
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string", field=name)
    task_id = request.path_params["task_id"]
    await emulator.force_outcome(task_id, status, code, message)
    return JSONResponse(await _task_view(request, emulator, task_id))


# -- faults -------------------------------------------------------------------------------
async def _faults_json(emulator: Emulator) -> dict[str, Any]:
    hits = await emulator.store.fault_hits()
    rules = await emulator.store.list_faults()
    return {"faults": [rule.to_dict() | {"hits": hits.get(rule.id, 0)} for rule in rules]}


@guarded
async def list_faults(request: Request) -> Response:
    return JSONResponse(await _faults_json(_emulator(request)))


@guarded
async def add_faults(request: Request) -> Response:
    emulator = _emulator(request)
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError):
        raise InvalidRequest("request body must be a fault rule or a list of rules") from None
    raw_rules = body if isinstance(body, list) else [body]
    existing = {rule.id for rule in await emulator.store.list_faults()}
    rules = []
    for i, raw in enumerate(raw_rules):
        n = len(existing) + 1
        while f"rule-{n}" in existing:
            n += 1
        try:
            rule = parse_rule(raw, f"rule-{n}", "fault" if len(raw_rules) == 1 else f"faults[{i}]")
        except FaultError as exc:
            raise InvalidRequest(str(exc)) from None
        existing.add(rule.id)
        rules.append(rule)
    for rule in rules:
        await emulator.store.add_fault(rule)
    return JSONResponse(
        {"faults": [rule.to_dict() | {"hits": 0} for rule in rules]}, status_code=201
    )


@guarded
async def clear_faults(request: Request) -> Response:
    await _emulator(request).store.clear_faults()
    return Response(status_code=204)


@guarded
async def delete_fault(request: Request) -> Response:
    rule_id = request.path_params["rule_id"]
    if not await _emulator(request).store.remove_fault(rule_id):
        raise EmulatorError(
            f"fault rule {rule_id!r} does not exist", status_code=404, code="not_found"
        )
    return Response(status_code=204)


# -- journal ------------------------------------------------------------------------------
@guarded
async def list_requests(request: Request) -> Response:
    params = request.query_params
    filters = {k: params[k] for k in ("path", "method", "task_id", "endpoint") if k in params}
    entries = [
        e
        for e in await _emulator(request).store.list_journal()
        if all(
            str(e.get(k) or "").upper() == v.upper() if k == "method" else e.get(k) == v
            for k, v in filters.items()
        )
    ]
    return JSONResponse({"requests": entries})


@guarded
async def clear_requests(request: Request) -> Response:
    await _emulator(request).store.clear_journal()
    return Response(status_code=204)


# -- usage and balances -------------------------------------------------------------------
@guarded
async def get_usage(request: Request) -> Response:
    emulator = _emulator(request)
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
    emulator = _emulator(request)
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
    emulator = _emulator(request)
    key = request.path_params["key"]
    amount = (await _json_object(request)).get("balance", ...)
    if isinstance(amount, float) and amount.is_integer():
        amount = int(amount)  # 51.0 is a whole number in JSON
    if amount is not None and (
        not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= 10**15
    ):
        raise InvalidRequest(
            "balance must be a whole number of credits >= 0, or null for unlimited",
            field="balance",
        )
    await emulator.settle_due(key_fingerprint(key))
    await emulator.store.set_balance(key_fingerprint(key), mask_key(key), amount)
    return JSONResponse({"key": mask_key(key), "balance": amount})


def _by_method(handlers: dict[str, Handler]) -> Handler:
    """One route per path, so a wrong method gets a 405 whose Allow lists every method."""

    async def run(request: Request) -> Response:
        return await handlers[request.method](request)

    return run


def routes() -> list[BaseRoute]:
    table: dict[str, dict[str, Handler]] = {
        "/_emulator/health": {"GET": health},
        "/_emulator/reset": {"POST": reset},
        "/_emulator/config": {"GET": get_config, "PATCH": patch_config},
        "/_emulator/clock": {"GET": get_clock},
        "/_emulator/clock/advance": {"POST": advance_clock},
        "/_emulator/tasks": {"GET": list_tasks},
        "/_emulator/tasks/{task_id}": {"GET": get_admin_task},
        "/_emulator/tasks/{task_id}/outcome": {"POST": force_outcome},
        "/_emulator/faults": {"GET": list_faults, "POST": add_faults, "DELETE": clear_faults},
        "/_emulator/faults/{rule_id}": {"DELETE": delete_fault},
        "/_emulator/requests": {"GET": list_requests, "DELETE": clear_requests},
        "/_emulator/usage": {"GET": get_usage},
        "/_emulator/balances": {"GET": list_balances},
        "/_emulator/balances/{key}": {"PUT": put_balance},
    }
    return [
        Route(path, _by_method(handlers), methods=list(handlers))
        for path, handlers in table.items()
    ]
