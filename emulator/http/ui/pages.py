"""The dashboard's pages (GET) and the small JSON answers they poll, once a second each."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...config import FIXED_SETTINGS
from ...core.checks import shown
from ...core.faults import EFFECTS, ENDPOINTS, HTTP_ERROR_STATUSES
from ...core.journal import query_from_filters
from ...core.query import one_of
from ...errors import TaskNotFound
from ...usecases.configuration import settings_json
from ...usecases.pages import MAX_PAGE
from ...usecases.results import INDEX
from ...usecases.submission import TASK_TYPES
from ..guard import emulator_of
from .access import PREFIX, signed_in, token_required
from .forms import Form
from .render import live, login_page, page, render
from .rows import STATUSES, effect_text, history, masked_rule, match_text, task_filter, task_rows

#: Entries of the usage log one billing page lists, in hold order (the totals cover every
#: charge; a link reads the next page).
USAGE_ROWS = 200
#: The billing page's orders: the newest charges first, or the whole log in hold order.
ORDERS = ("newest", "oldest")
#: Newest journal entries a task's page lists.
JOURNAL_ROWS = 100
#: Newest journal entries a task's page looks among for its task's: a page's worth, whatever
#: ``journal_limit`` keeps (up to 10^6; reading all of 100,000 took 25 ms a load, the first
#: 322-352 ms building them, docs/dashboard.md).
JOURNAL_READ = MAX_PAGE


# -- tasks --------------------------------------------------------------------------------
@page("status", "model")
async def tasks_page(request: Request) -> Response:
    emulator = emulator_of(request)
    models = emulator.catalogue.model_names
    wanted = task_filter(request.query_params.multi_items(), models)
    table = await task_rows(emulator.store, emulator.tasks, wanted)
    query = urlencode({k: v for k, v in (("status", wanted.status), ("model", wanted.model)) if v})
    return await render(
        request,
        "tasks.html",
        {
            "title": "Tasks",
            "nav": "tasks",
            "models": models,
            "statuses": STATUSES,
            "wanted": wanted,
            "table": table,
            "live_url": f"{PREFIX}/live/tasks" + (f"?{query}" if query else ""),
        },
    )


@live("status", "model")
async def live_tasks(request: Request) -> dict[str, Any]:
    emulator = emulator_of(request)
    wanted = task_filter(request.query_params.multi_items(), emulator.catalogue.model_names)
    return await task_rows(emulator.store, emulator.tasks, wanted)


@page()
async def task_page(request: Request) -> Response:
    emulator = emulator_of(request)
    steering = emulator.steering
    task = await steering.find(request.path_params["task_id"])  # 404 as a page
    view = await steering.view(task, str(request.base_url))
    query = query_from_filters({"task_id": task.task_id})
    journal = await steering.journal_newest(query, JOURNAL_READ)
    # Its own charge only, read by its id: the log holds a charge per stored task (100,000 at
    # the cap).
    charge = await steering.billing.charge_of(task.task_id)
    submitted = next((e for e in journal if e["endpoint"] == "submit"), None)
    return await render(
        request,
        "task.html",
        {
            "title": task.task_id,
            "nav": "tasks",
            "view": view,
            "task": view["task"],
            "history": history(view),
            "journal": journal[-JOURNAL_ROWS:],
            "journal_count": len(journal),
            "journal_read": JOURNAL_READ,
            "submitted": submitted,
            "charge": charge,
            "unit": emulator.prices.unit,
            "terminal": view["status"] in ("succeeded", "failed"),
            "pictures": picture_urls(task.task_id, len(view["result_urls"])),
            "live_url": f"{PREFIX}/live/tasks/{task.task_id}",
            "json": _json,
        },
    )


def picture_urls(task_id: str, count: int) -> list[str]:
    """The dashboard's own addresses of a task's pictures (``picture`` below)."""
    return [f"{PREFIX}/tasks/{task_id}/pictures/{i}" for i in range(count)]


async def picture(request: Request) -> Response:
    """A result picture for the dashboard: the same bytes as the task's result URL, but not
    journaled and out of the fault rules' reach, so looking never changes what the app sees
    (a rule with ``times`` keeps its hits for the app). Behind the admin token, like a page."""
    if not signed_in(request):
        return await login_page(request)
    emulator = emulator_of(request)
    await emulator.start()
    task = await emulator.steering.find(request.path_params["task_id"])
    # The index as `picture_urls` writes it, the result URLs' form: "01" is no second address
    # of picture 1, and 5000 digits (no Python int) a 404, not a 500.
    given = request.path_params["index"]
    index = int(given) if INDEX.fullmatch(given) else -1
    if not 0 <= index < task.schedule.images:
        raise TaskNotFound(f"task {shown(task.task_id)} has no result image {shown(given)}")
    results = emulator.results
    result = await results.result(task.task_id, task.token, index, task.output_format)
    data, media_type = await results.image(result, index)
    return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})


@live()
async def live_task(request: Request) -> dict[str, Any]:
    emulator = emulator_of(request)
    view = await emulator.steering.task_view(request.path_params["task_id"], str(request.base_url))
    return {"status": view["status"], "progress": int(view["progress"].rstrip("%"))}


# -- faults -------------------------------------------------------------------------------
#: The options of the fault form's selects (the page lists these; ``actions`` refuses any
#: other value): a form that sends another was not made by the page, and a value the rule
#: would take (an unknown body kind read as text, a task type no task has) must not stand in
#: for a mistake. "" is the blank option.
SELECTS: dict[str, tuple[str, ...]] = {
    "kind": EFFECTS,
    "status": ("", *map(str, HTTP_ERROR_STATUSES)),
    "body_kind": ("json", "text"),
    "endpoint": ENDPOINTS,
    "task_type": ("", *TASK_TYPES),
}

#: The fault form's effect fields and the kinds that use each (the page shows a field only
#: with those kinds; ``actions`` refuses one filled in for another kind rather than drop it).
#: ``body_kind`` is a select, always sent: it only says how to read ``answer_body``.
FORM_KINDS: dict[str, tuple[str, ...]] = {
    "status": ("http_error",),
    "retry_after": ("http_error",),
    "code": ("fail_task", "http_error"),
    "message": ("fail_task", "http_error"),
    "at_progress": ("fail_task",),
    "images": ("partial",),
    "answer_status": ("respond",),
    "body_kind": ("respond",),
    "answer_body": ("respond",),
    "answer_headers": ("respond",),
    "seconds": ("latency", "hang"),
}


async def faults_view(
    request: Request, form: Form | None = None, problem: str = "", status: int = 200
) -> Response:
    """The faults page; after a refused rule, with what was typed and why it was refused."""
    emulator = emulator_of(request)
    rules = [masked_rule(rule) for rule in await emulator.steering.fault_rules.faults()]
    for rule in rules:
        rule["match_text"] = match_text(rule["match"])
        rule["effect_text"] = effect_text(rule["effect"])
    return await render(
        request,
        "faults.html",
        {
            "title": "Faults",
            "nav": "faults",
            "rules": rules,
            "kinds": EFFECTS,
            "endpoints": ENDPOINTS,
            "http_statuses": HTTP_ERROR_STATUSES,
            "body_kinds": SELECTS["body_kind"],
            "task_types": SELECTS["task_type"],
            "uses": {name: " ".join(kinds) for name, kinds in FORM_KINDS.items()},
            "models": emulator.catalogue.model_names,
            "limit": emulator.settings.max_fault_rules,
            "form": form or {},
            "problem": problem,
            "live_url": f"{PREFIX}/live/faults",
        },
        status=status,
    )


@page()
async def faults_page(request: Request) -> Response:
    return await faults_view(request)


@live()
async def live_faults(request: Request) -> dict[str, Any]:
    rules = await emulator_of(request).steering.fault_rules.faults()
    return {"faults": [{"id": rule["id"], "hits": rule["hits"]} for rule in rules]}


# -- billing and settings -----------------------------------------------------------------
@page("order", "after")
async def billing_page(request: Request) -> Response:
    emulator = emulator_of(request)
    billing = emulator.steering.billing
    # The newest charges first (newest first), or the whole log page by page in hold order
    # (``?order=oldest``, then ``after``); either settles what has ended and reads the totals
    # of every charge from the stores' running sums: bounded however long the log.
    after = request.query_params.get("after")
    order = request.query_params.get("order")
    walking = after is not None or one_of("order", order or "newest", ORDERS) == "oldest"
    if walking:
        usage = await billing.usage({}, limit=USAGE_ROWS, after=after)
    else:
        usage = await billing.newest(USAGE_ROWS) | {"next": None}
    balances = await billing.balances()
    return await render(
        request,
        "billing.html",
        {
            "title": "Billing",
            "nav": "billing",
            "unit": usage["unit"],
            "totals": usage["totals"],
            "entries": usage["entries"],
            "walking": walking,
            "first": after is None,
            "next_url": None
            if usage["next"] is None
            else f"{PREFIX}/billing?" + urlencode({"after": usage["next"]}),
            "balances": balances,
            "live_url": f"{PREFIX}/live/clock",
        },
    )


def _json(value: Any, indent: int | None = None) -> str:
    """A value as JSON text for a page (escaped by the template like any text)."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


@page()
async def settings_page(request: Request) -> Response:
    emulator = emulator_of(request)
    values = settings_json(
        emulator.settings, emulator.seed
    )  # admin_token, api_keys, store password masked
    values["faults"] = [masked_rule(rule) for rule in values["faults"]]
    rows = [
        {"name": name, "value": _json(value), "runtime": name not in FIXED_SETTINGS}
        for name, value in values.items()
    ]
    return await render(
        request,
        "settings.html",
        {
            "title": "Settings",
            "nav": "settings",
            "rows": rows,
            "live_url": f"{PREFIX}/live/clock",
        },
    )


@live()
async def live_clock(request: Request) -> dict[str, Any]:
    return {}


# -- signing in ---------------------------------------------------------------------------
async def login_form(request: Request) -> Response:
    if not token_required(request) or signed_in(request):
        return RedirectResponse(PREFIX, status_code=303)
    return await login_page(request, status=200)


__all__ = [
    "SELECTS",
    "billing_page",
    "faults_page",
    "faults_view",
    "live_clock",
    "live_faults",
    "live_task",
    "live_tasks",
    "login_form",
    "picture",
    "settings_page",
    "task_page",
    "tasks_page",
]
