"""The control plane under ``/_emulator``: what only the emulator has, never under ``/v1``.

Each route reads its arguments at the door (JSON, the query, the path) and calls the control
plane's operation (``emulator.usecases.steer``), which the dashboard and the pytest fixture
call too: one rule, one view, whichever way in.
"""

from __future__ import annotations

import os
from typing import Any, get_args
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from ..core.billing import ChargeState
from ..core.journal import journal_params
from ..core.keys import mask_key
from ..core.query import one_of, query_values
from ..core.tasks import Status
from ..errors import EmulatorError, InvalidRequest, StoreUnavailable
from ..usecases.configuration import settings_json
from ..usecases.pages import MAX_PAGE
from ..usecases.settle import key_problem
from ..usecases.steer import Steering
from .guard import Handler, guarded, is_admin, json_body, json_object
from .guard import emulator_of as _emulator


def _steering(request: Request) -> Steering:
    return _emulator(request).steering


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
    if store.round_trips is not None:
        report["round_trips"] = store.round_trips
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
    await json_object(request, known=())  # a body that looks like options is refused
    await _steering(request).reset()
    return JSONResponse({"status": "reset"})


def _worker_headers(request: Request) -> dict[str, str]:
    """Under ``serve --workers N`` (N > 1), which worker answered, and that settings are its
    own: a PATCH changes this worker only, and the others keep theirs (docs/control-plane.md)."""
    workers = getattr(request.app.state, "workers", 1)
    if workers <= 1:
        return {}
    return {"X-Emulator-Worker": f"pid={os.getpid()}; workers={workers}; scope=this-worker-only"}


@guarded
async def get_config(request: Request) -> Response:
    emulator = _emulator(request)
    body = settings_json(emulator.settings, emulator.seed)
    return JSONResponse(body, headers=_worker_headers(request))


@guarded
async def patch_config(request: Request) -> Response:
    changes = await json_object(request, known=None)  # "unknown setting 'x'" (configure)
    settings = await _steering(request).configure(changes, "restart with it instead")
    body = settings_json(settings, _emulator(request).seed)
    return JSONResponse(body, headers=_worker_headers(request))


@guarded
async def get_clock(request: Request) -> Response:
    emulator = _emulator(request)
    return JSONResponse({"mode": emulator.settings.clock, "now": await emulator.clock.now()})


@guarded
async def advance_clock(request: Request) -> Response:
    steering = _steering(request)
    steering.manual_clock()  # 409 before the body is read: no other clock can move
    seconds = (await json_object(request, known=("seconds",))).get("seconds")
    return JSONResponse({"mode": "manual", "now": await steering.advance(seconds)})


def _page_limit(params: dict[str, str]) -> object:
    """A listing's ``limit`` query parameter (default `MAX_PAGE`; tasks, journal, usage): a
    number when it is one; its range (and anything else) is the page's to refuse, naming it
    (`usecases.pages.page_limit`)."""
    limit: object = params.get("limit", MAX_PAGE)
    if isinstance(limit, str) and limit.isascii() and limit.isdigit() and len(limit) <= 9:
        limit = int(limit)
    return limit


def _known_model(request: Request, params: dict[str, str]) -> None:
    """A ``model`` filter must name a model of the catalogue (as the dashboard's does): a
    typo would answer an empty list that reads as "no such task"."""
    if "model" in params:
        one_of("model", params["model"], _emulator(request).catalogue.model_names)


# -- tasks --------------------------------------------------------------------------------
@guarded
async def list_tasks(request: Request) -> Response:
    params = query_values(request.query_params.multi_items(), TASK_PARAMETERS, "task parameter")
    status = params.get("status")
    if status is not None:
        one_of("status", status, get_args(Status))
    _known_model(request, params)
    views, following = await _steering(request).tasks_page(
        str(request.base_url),
        status=status,
        model=params.get("model"),
        limit=_page_limit(params),
        after=params.get("after"),
    )
    return JSONResponse({"tasks": views, "next": following})


@guarded
async def get_admin_task(request: Request) -> Response:
    steering = _steering(request)
    task_id = request.path_params["task_id"]
    return JSONResponse(await steering.task_view(task_id, str(request.base_url)))


@guarded
async def force_outcome(request: Request) -> Response:
    body = await json_object(request, known=OUTCOME_FIELDS)
    status = body.get("status")
    if status not in ("succeeded", "failed"):
        raise InvalidRequest("status must be succeeded or failed", field="status")
    for name in ("code", "message"):
        if status == "succeeded" and body.get(name) is not None:  # else silently dropped
            raise InvalidRequest(
                f"{name} belongs to a failure: leave it out (or null) with status succeeded, "
                "or force status failed",
                field=name,
            )
    view = await _steering(request).end_task(
        request.path_params["task_id"],
        status,
        str(request.base_url),
        body.get("code"),
        body.get("message"),
    )
    return JSONResponse(view)


# -- faults -------------------------------------------------------------------------------
@guarded
async def list_faults(request: Request) -> Response:
    return JSONResponse({"faults": await _steering(request).fault_rules.faults()})


@guarded
async def add_faults(request: Request) -> Response:
    body = await json_body(request)
    raws = body if isinstance(body, list) else [body]
    rules = await _steering(request).fault_rules.add_faults(raws)
    return JSONResponse(
        {"faults": [rule.to_dict() | {"hits": 0} for rule in rules]}, status_code=201
    )


@guarded
async def clear_faults(request: Request) -> Response:
    await json_object(request, known=())
    await _steering(request).fault_rules.clear_faults()
    return Response(status_code=204)


@guarded
async def delete_fault(request: Request) -> Response:
    await json_object(request, known=())
    await _steering(request).fault_rules.remove_fault(request.path_params["rule_id"])
    return Response(status_code=204)


# -- journal ------------------------------------------------------------------------------
@guarded
async def list_requests(request: Request) -> Response:
    # Checked before the store is read: an unknown or never-matching filter is a 400 naming
    # it, never an answer that looks like "nothing matched" (emulator/core/journal.py).
    query, paging = journal_params(request.query_params.multi_items())
    entries, following, dropped = await _steering(request).journal_page(
        query, limit=_page_limit(paging), after=paging.get("after")
    )
    # dropped: entries journal_limit dropped before this page (since `after`, or the last
    # clear): a walk that sees one above 0 did not see the whole journal. unrecorded: this
    # worker's requests since the last reset or clear with no entry at all (journal_limit 0,
    # or lost to a store outage), never numbered, so no `dropped` counts them.
    unrecorded = _steering(request).journal_missing()
    return JSONResponse(
        {"requests": entries, "next": following, "dropped": dropped, "unrecorded": unrecorded}
    )


@guarded
async def clear_requests(request: Request) -> Response:
    await json_object(request, known=())  # filters in a body never narrow the clear
    await _steering(request).clear_journal()
    return Response(status_code=204)


# -- usage and balances -------------------------------------------------------------------
@guarded
async def get_usage(request: Request) -> Response:
    params = query_values(request.query_params.multi_items(), USAGE_PARAMETERS, "usage parameter")
    if "state" in params:
        one_of("state", params["state"], get_args(ChargeState))
    _known_model(request, params)
    filters = {name: params[name] for name in USAGE_FILTERS if name in params}
    billing = _steering(request).billing
    usage = await billing.usage(filters, limit=_page_limit(params), after=params.get("after"))
    return JSONResponse(usage)


@guarded
async def list_balances(request: Request) -> Response:
    emulator = _emulator(request)
    balances = await emulator.billing.balances()
    return JSONResponse(
        {
            "unit": emulator.prices.unit,
            "balances": [{"key": row["key"], "balance": row["balance"]} for row in balances],
        }
    )


@guarded
async def put_balance(request: Request) -> Response:
    key = request.path_params["key"]
    problem = key_problem(key)
    if problem is not None:  # before the body is read
        raise InvalidRequest(f"key {problem}", field="key")
    amount = (await json_object(request, known=("balance",))).get("balance", ...)
    if isinstance(amount, float) and amount.is_integer():
        amount = int(amount)  # 51.0 is a whole number in JSON
    # One store step: settles what ended, then sets.
    await _steering(request).set_balance(key, amount, "balance")
    return JSONResponse({"key": mask_key(key), "balance": amount})


#: The fields of ``POST /_emulator/tasks/{id}/outcome``.
OUTCOME_FIELDS = ("status", "code", "message")
#: The query parameters of ``GET /_emulator/tasks``: filters, and the page's size and start.
TASK_PARAMETERS = ("status", "model", "limit", "after")
#: The filters of ``GET /_emulator/usage``, and with them its page's size and start.
USAGE_FILTERS = ("key", "model", "state", "task_id")
USAGE_PARAMETERS = (*USAGE_FILTERS, "limit", "after")
#: Routes that read their query themselves (health: open to probes, whatever they append).
_OWN_QUERY: frozenset[Handler] = frozenset({health, list_tasks, list_requests, get_usage})
#: What a refusal adds where a parameter may look like it would narrow the action.
_HINTS: dict[Handler, str] = {
    clear_requests: "; DELETE /_emulator/requests clears the whole journal (filters are for "
    "GET /_emulator/requests)",
    clear_faults: "; DELETE /_emulator/faults removes every rule (one: "
    "DELETE /_emulator/faults/{id})",
}


def _by_method(handlers: dict[str, Handler]) -> Handler:
    """One route per path, so a wrong method gets a 405 whose Allow lists every method."""

    async def run(request: Request) -> Response:
        # Starlette routes HEAD wherever GET is allowed: it is answered as the GET (the server
        # sends no body).
        method = "GET" if request.method == "HEAD" else request.method
        handler = handlers[method]
        query = request.scope.get("query_string")
        # A route that takes no parameter refuses one rather than ignore it: a silent "all"
        # (clear everything, list everything) is the worst answer to a typo. After the admin
        # token (the handler refuses a caller without it): a stranger learns nothing here.
        if query and handler not in _OWN_QUERY and is_admin(request):
            query_values(request.query_params.multi_items(), (), hint=_HINTS.get(handler, ""))
        return await handler(request)

    return run


async def _slashed(request: Request) -> Response:
    """A control-plane path ending in a slash: a 404 in the error body, not Starlette's bare
    307 to the path without it. That redirect, followed, turned ``DELETE /_emulator/faults/``
    (a rule id left empty) into clearing every rule, and ``PUT /_emulator/balances/`` (an
    empty key) into a 405. A person typing a dashboard address still gets the redirect."""
    path = request.url.path
    if path.startswith("/_emulator/ui/") and request.method in ("GET", "HEAD"):
        return RedirectResponse(str(request.url.replace(path=path.rstrip("/"))), 307)
    # The path is not echoed: it may hold an API key (balances) or a result URL's token.
    raise EmulatorError(
        f"no route for {request.method} on a path ending in a slash: paths under /_emulator "
        "do not end with one (an id or key left empty?)",
        field="path",
        status_code=404,
        code="not_found",
    )


#: Every method a client may send to a slashed path (each gets the 404, never a 405).
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class _SlashRoute(Route):
    """Matches a path that came with its trailing slash, not one Starlette's slash redirect
    probes by adding one (``/_emulator/nope`` stays a plain 404, not a 307 to ``nope/``)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        raw = scope.get("raw_path")  # the path as sent (the probe changes only "path")
        # Decoded: a slash sent as %2F is one too (Starlette's redirect takes it for one).
        if isinstance(raw, bytes) and not unquote_to_bytes(raw).endswith(b"/"):
            return Match.NONE, {}
        return super().matches(scope)


def slash_routes() -> list[BaseRoute]:
    """Last among the app's routes: what no other route matched and ends in a slash."""
    return [_SlashRoute("/_emulator/{rest:path}/", _slashed, methods=_ANY_METHOD)]


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
