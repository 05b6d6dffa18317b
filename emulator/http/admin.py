"""The control plane under ``/_emulator``: what only the emulator has, never under ``/v1``."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..config import FIXED_SETTINGS, ConfigError
from ..core.checks import MAX_CODE_CHARS, MAX_MESSAGE_CHARS
from ..core.clock import ManualClock
from ..core.faults import FaultError, parse_rule
from ..core.journal import query_from_params
from ..core.tasks import Task
from ..errors import EmulatorError, InvalidRequest, StoreUnavailable
from ..usecases.emulator import Emulator
from ..usecases.steer import MAX_FAULT_RULES, settings_json
from ..usecases.sweep import is_expired
from .accounts import get_usage, list_balances, put_balance
from .guard import Handler, guarded, is_admin, json_body, json_object, text_field
from .guard import emulator_of as _emulator


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
    body: dict[str, Any] = {
        "status": "ok" if report["ok"] else "store_unavailable",
        "clock": settings.clock,
        "seed": emulator.seed,
        "envelope": settings.envelope,
        "store": report,
    }
    if not is_admin(request):
        # Health is open to probes; the seed predicts task ids, so only the control plane's
        # callers see it.
        del body["seed"]
    return JSONResponse(body, status_code=200 if report["ok"] else 503)


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
    changes = await json_object(request)
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
    seconds = (await json_object(request)).get("seconds")
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
    body = await json_object(request)
    status = body.get("status")
    if status not in ("succeeded", "failed"):
        raise InvalidRequest("status must be succeeded or failed", field="status")
    code = text_field(body, "code", MAX_CODE_CHARS)
    message = text_field(body, "message", MAX_MESSAGE_CHARS)
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
    body = await json_body(request)
    raw_rules = body if isinstance(body, list) else [body]
    existing = {rule.id for rule in await emulator.store.list_faults()}
    if len(existing) + len(raw_rules) > MAX_FAULT_RULES:
        # Every request is matched against every rule: the list stays short.
        raise InvalidRequest(
            f"at most {MAX_FAULT_RULES} fault rules can be installed "
            f"({len(existing)} are, {len(raw_rules)} more were sent)"
        )
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
    # Checked before the store is read: an unknown or never-matching filter is a 400 naming
    # it, never an answer that looks like "nothing matched" (emulator/journal.py).
    query = query_from_params(request.query_params.multi_items())
    entries = query.select(await _emulator(request).store.list_journal())
    return JSONResponse({"requests": entries})


@guarded
async def clear_requests(request: Request) -> Response:
    await _emulator(request).store.clear_journal()
    return Response(status_code=204)


def _by_method(handlers: dict[str, Handler]) -> Handler:
    """One route per path, so a wrong method gets a 405 whose Allow lists every method."""

    async def run(request: Request) -> Response:
        # Starlette routes HEAD wherever GET is allowed: it is answered as the GET (the server
        # sends no body).
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

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
