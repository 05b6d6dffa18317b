"""The dashboard's forms: each reads its fields at the door, calls the control plane's
operation (``emulator/usecases/steer.py``) and goes back to the page it came from (303)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...core.checks import (
    MAX_CODE_CHARS,
    MAX_HEADER_VALUE_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_TEXT_CHARS,
    id_problem,
    repeated_header,
    shown,
    text_problem,
)
from ...errors import EmulatorError, InvalidRequest
from ...usecases.settle import balance_problem
from ...usecases.steer import Steering
from ..guard import emulator_of
from .access import (
    PREFIX,
    check_same_site,
    safe_next,
    sign_in,
    sign_out,
    token_matches,
    token_required,
)
from .forms import Form, optional_int, optional_number, optional_text, read_form
from .pages import FORM_KINDS, SELECTS, faults_view
from .render import action, back, login_page, refused


def _steering(request: Request) -> Steering:
    return emulator_of(request).steering


def _text(form: Form, name: str, limit: int) -> str | None:
    value = optional_text(form, name)
    problem = None if value is None else text_problem(value, limit)
    if problem is not None:
        raise InvalidRequest(f"{name} {problem}", field=name)
    return value


# -- time and tasks -----------------------------------------------------------------------
@action
async def advance_clock(request: Request, form: Form) -> Response:
    seconds = optional_number(form, "seconds")
    if seconds is None:
        raise InvalidRequest("seconds is required: how far to move the clock", field="seconds")
    await _steering(request).advance(seconds)
    return back(form)


@action
async def end_task(request: Request, form: Form) -> Response:
    outcome = form.get("outcome")
    if outcome not in ("succeeded", "failed"):
        raise InvalidRequest("outcome must be succeeded or failed", field="outcome")
    await _steering(request).end_task(
        request.path_params["task_id"],
        outcome,
        str(request.base_url),
        code=_text(form, "code", MAX_CODE_CHARS) if outcome == "failed" else None,
        message=_text(form, "message", MAX_MESSAGE_CHARS) if outcome == "failed" else None,
    )
    return back(form)


@action
async def reset(request: Request, form: Form) -> Response:
    await _steering(request).reset()
    return back(form)


# -- faults -------------------------------------------------------------------------------
def _headers(text: str, field: str) -> dict[str, str]:
    """``Name: value`` lines (the headers a rule matches on, or those it answers with)."""
    headers: dict[str, str] = {}
    #: Each name by its lower case: a repeated line would overwrite the first here, before
    #: the control plane could refuse it, so it is checked as the rule's headers are.
    seen: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name:
            raise InvalidRequest(f"{field}: line {number} must be 'Name: value'", field=field)
        first = seen.get(name.lower())
        if first is not None:  # said as the rule's check says it
            problem = repeated_header([first, name])
            raise InvalidRequest(f"{field}: line {number}: {problem}", field=field)
        seen[name.lower()] = name
        headers[name] = value.strip()
    return headers


#: What a select absent from the form (not a browser's) stands for: the page's own default.
_UNSENT = {"status": "", "body_kind": "json", "endpoint": "any", "task_type": ""}


def _chosen(form: Form) -> None:
    """400 naming the first select whose value is not one of its options."""
    for name, options in SELECTS.items():
        value = form.get(name, _UNSENT.get(name))
        named = ", ".join(option for option in options if option)
        if value is None:
            raise InvalidRequest(f"{name} is required: one of {named}", field=name)
        if value not in options:
            blank = " or blank" if "" in options else ""
            raise InvalidRequest(
                f"{name} must be one of {named}{blank}, got {shown(value)}", field=name
            )


def _unused(form: Form) -> None:
    """400 naming the first effect field filled in that the chosen kind does not use: the
    rule would drop it silently (without the page's script every field is shown and sent)."""
    kind = form["kind"]  # one of its options: _chosen
    for name, kinds in FORM_KINDS.items():
        # body_kind is a select, always sent: it says how to read answer_body, if any.
        if kind not in kinds and name != "body_kind" and form.get(name, "").strip():
            raise InvalidRequest(
                f"{name} does not apply to kind {kind} (it is for kind {' or '.join(kinds)}): "
                "leave it blank, or choose that kind",
                field=name,
            )


def rule_from_form(form: Form) -> dict[str, Any]:
    """A fault rule in the control plane's vocabulary (``POST /_emulator/faults``) from the
    form's fields; a blank field is left out, so the rule's default applies."""
    _chosen(form)
    _unused(form)
    if form.get("kind") == "respond":  # its own fields: any status, a body, headers
        return _respond_rule(form)
    effect: dict[str, Any] = {"kind": form["kind"]}
    for name in ("code", "message"):
        effect[name] = optional_text(form, name)
    for name in ("at_progress", "images", "status", "retry_after"):
        effect[name] = optional_int(form, name)
    effect["seconds"] = optional_number(form, "seconds")
    return _rule(form, {k: v for k, v in effect.items() if v is not None})


def _header_lines(form: Form, name: str) -> dict[str, str]:
    text = form.get(name, "")
    if len(text) > 32 * (MAX_HEADER_VALUE_CHARS + 300):
        raise InvalidRequest(f"{name} is longer than 32 headers can be", field=name)
    return _headers(text, name)


def _rule(form: Form, effect: dict[str, Any]) -> dict[str, Any]:
    """The rule around an effect: the match, the id, probability and times from the form."""
    match: dict[str, Any] = {
        name: optional_text(form, name)
        for name in ("endpoint", "model", "task_type", "prompt_contains", "api_key")
    }
    match["headers"] = _header_lines(form, "headers")
    raw: dict[str, Any] = {
        "id": optional_text(form, "id"),
        "match": {k: v for k, v in match.items() if v},
        "effect": effect,
        "probability": optional_number(form, "probability"),
        "times": optional_int(form, "times"),
    }
    return {k: v for k, v in raw.items() if v is not None}


def _no_repeated_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of ``answer_body``; a repeated name is refused, as the control plane's JSON
    bodies refuse it (json.loads kept the last value silently)."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidRequest(
                    f"answer_body repeats the name {shown(key)}: each name once",
                    field="answer_body",
                )
            seen.add(key)
    return obj


def _respond_rule(form: Form) -> dict[str, Any]:
    """A ``respond`` rule: the status, the body as JSON or text, the answer's headers; the
    control plane checks them (status range, body size, forbidden headers) like any rule."""
    effect: dict[str, Any] = {"kind": "respond", "status": optional_int(form, "answer_status")}
    body = form.get("answer_body", "")
    if body:
        if form.get("body_kind", "json") == "json":  # the options: _chosen
            try:
                effect["json"] = json.loads(body, object_pairs_hook=_no_repeated_names)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(
                    f"answer_body is not JSON ({exc.msg} at line {exc.lineno}, column "
                    f"{exc.colno}): choose text, or fix it",
                    field="answer_body",
                ) from None
            except RecursionError:  # the rule's own depth check would refuse it anyway
                raise InvalidRequest(
                    "answer_body nests too deeply to be a rule's answer", field="answer_body"
                ) from None
            except ValueError:  # json's other refusal: an integer of 4300+ digits (was a 500)
                raise InvalidRequest(
                    "answer_body holds a number with too many digits (4300 or more)",
                    field="answer_body",
                ) from None
            if effect["json"] is None:  # the control plane reads a JSON null as no body
                raise InvalidRequest(
                    "answer_body is JSON null, which a rule reads as no body: leave it empty "
                    "for no body, or choose text to send the word null",
                    field="answer_body",
                )
        else:
            effect["body"] = body
    headers = _header_lines(form, "answer_headers")
    if headers:
        effect["headers"] = headers
    return _rule(form, effect)


@action
async def add_fault(request: Request, form: Form) -> Response:
    try:
        # The control plane's rules, its cap on rules included.
        await _steering(request).fault_rules.add_fault(rule_from_form(form))
    except EmulatorError as exc:  # FaultError names the field: shown beside what was typed
        return await faults_view(request, form, exc.message, exc.status_code)
    return back(form)


@action
async def remove_fault(request: Request, form: Form) -> Response:
    rule_id = form.get("id", "")
    problem = id_problem(rule_id)
    if problem is not None:
        raise InvalidRequest(f"id {problem}", field="id")
    await _steering(request).fault_rules.remove_fault(rule_id)  # 404 names an unknown id
    return back(form)


# -- balances -----------------------------------------------------------------------------
def _balance(form: Form) -> int | None:
    """Credits typed in the balance field; blank: unlimited."""
    amount = optional_int(form, "balance")
    problem = balance_problem(amount)
    if problem is not None:
        raise InvalidRequest(f"balance {problem}, or blank for unlimited", field="balance")
    return amount


@action
async def set_balance(request: Request, form: Form) -> Response:
    key = form.get("key", "")
    problem = text_problem(key, MAX_TEXT_CHARS) if key else "is required: the API key"
    if problem is not None:
        raise InvalidRequest(f"key {problem}", field="key")
    await _steering(request).set_balance(key, _balance(form), "balance")
    return back(form)


@action
async def change_balance(request: Request, form: Form) -> Response:
    """A row of the balance table: the key is known only by its fingerprint and masked label
    (the store keeps no key), so this sets the balance the store holds under that
    fingerprint, as ``Steering.set_balance`` does once it has fingerprinted a key."""
    billing = _steering(request).billing
    owner = form.get("owner", "")
    if not any(row["owner"] == owner for row in await billing.balances()):
        raise EmulatorError(
            "owner names no key with a balance; reload the billing page",
            field="owner",
            status_code=404,
            code="not_found",
        )
    # One store step: settles what has ended, then sets (the owner's row was just seen).
    await billing.set_owner_balance(owner, _balance(form))
    return back(form)


# -- signing in and out -------------------------------------------------------------------
async def login(request: Request) -> Response:
    """The admin token typed once; then a session cookie (``access.sign_in``)."""
    form: Form = {}
    try:
        form = await read_form(request)
        check_same_site(request, form)
    except EmulatorError as exc:
        return await refused(request, exc, safe_next(form.get("next")))
    if token_required(request) and not token_matches(request, form.get("token", "")):
        return await login_page(
            request, problem="that is not the admin token", next_url=safe_next(form.get("next"))
        )
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    sign_in(response, request)
    return response


async def logout(request: Request) -> Response:
    form: Form = {}
    try:
        form = await read_form(request)
        check_same_site(request, form)
    except EmulatorError as exc:
        return await refused(request, exc)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    sign_out(response, request)
    return response


__all__ = [
    "add_fault",
    "advance_clock",
    "change_balance",
    "end_task",
    "login",
    "logout",
    "remove_fault",
    "reset",
    "rule_from_form",
    "set_balance",
]
