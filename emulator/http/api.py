"""HTTP routes of the real API (`/v1/images/tasks`) and the emulator's result images.

Handlers translate between HTTP and the use cases the `Emulator` composition root built
(tasks, submitter, billing, results, faults), apply HTTP-level faults, and journal every
request; every rule about tasks lives elsewhere. The three routes here are served by
`dispatch.Dispatch` when the app has no middleware, by Starlette otherwise: same handlers.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..config import Settings
from ..core.checks import shown
from ..core.faults import Endpoint, RequestFacts
from ..core.keys import key_fingerprint
from ..core.tasks import QUEUED, Observation, Task
from ..errors import EmulatorError, StoreUnavailable, TaskNotFound, Unauthorized
from ..usecases.emulator import Emulator
from ..usecases.results import NAME, Results
from .effects import DropConnection, after, before
from .guard import emulator_of as _emulator
from .headers import first_header
from .journal import record
from .privates import PrebuiltResponse
from .submission import read_submission
from .terminal import TerminalAnswers, kept_answer

Handler = Callable[[Request], Awaitable[Response]]


_encode_json = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
).encode


def _json_answer(content: Any, status_code: int = 200) -> Response:
    """What Starlette's ``JSONResponse(content, status_code)`` sends, same bytes and headers
    (tests/test_answer_headers.py compares them), with one encoder for the process
    (``json.dumps`` with options builds one per call) and the two headers made directly."""
    return _json_bytes_answer(_encode_json(content).encode("utf-8"), status_code)


def _json_bytes_answer(body: bytes, status_code: int) -> Response:
    """An encoded JSON body answered with the headers ``JSONResponse`` gives it."""
    if status_code < 200 or status_code in (204, 304):
        headers = [(b"content-type", b"application/json")]
    else:
        headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    return PrebuiltResponse(body, headers, status_code)


def _state(request: Request) -> dict[str, Any]:
    """The dict behind ``request.state``, written directly (the wrapper costs per attribute)."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


@functools.lru_cache(maxsize=256)
def _base_url_of(
    scheme: str, server: tuple[str, int] | None, host: bytes | None, root_path: str
) -> str:
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "path": root_path if root_path.endswith("/") else root_path + "/",
        "query_string": b"",
        "headers": [] if host is None else [(b"host", host)],
    }
    return str(URL(scope=scope))


def base_url(request: Request) -> str:
    """``str(request.base_url)``, remembered per scheme, server, Host header and root path:
    building Starlette URLs costs more than the rest of a poll."""
    scope = request.scope
    server = scope.get("server")
    return _base_url_of(
        scope.get("scheme", "http"),
        None if server is None else (server[0], server[1]),
        first_header(scope, b"host"),
        scope.get("app_root_path", scope.get("root_path", "")),
    )


def bearer_key(request: Request, settings: Settings) -> str:
    """The request's bearer key, or 401 (SPEC D-1)."""
    raw = first_header(request.scope, b"authorization")
    header = None if raw is None else raw.decode("latin-1")
    if not header:
        raise Unauthorized(
            "You didn't provide an API key. Send it in the Authorization header as "
            "'Bearer YOUR_KEY'."
        )
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("The Authorization header must be 'Bearer YOUR_KEY'.")
    allowed = settings.api_keys
    if allowed and key not in allowed:
        raise Unauthorized("Incorrect API key provided.")
    _state(request)["api_key"] = key
    return key


def task_body(
    settings: Settings, results: Results, task: Task, obs: Observation, base_url: str
) -> dict[str, Any]:
    """The task object of SPEC 2.6, as the service sends it."""
    succeeded = obs.status == "succeeded"
    urls = results.urls(task, base_url) if succeeded else []
    metadata: dict[str, Any] = {"task_type": task.task_type, "result_count": len(urls)}
    # D-3: listed when there are several results; always_list_results lists one too. Never an
    # empty list: before success (and on failure) there is nothing to list, and the contract
    # wants at least one item whenever the member is there.
    if len(urls) > 1 or (urls and settings.always_list_results):
        metadata["result_urls"] = urls
    error: Any = None
    if obs.status == "failed":
        code = task.schedule.error_code or "upstream_error"
        message = task.schedule.error_message or "the upstream model failed to generate the image"
        error = message if settings.error_shape == "string" else {"code": code, "message": message}
    body = {
        "task_id": task.task_id,
        "status": obs.status,
        "progress": f"{obs.progress}%",
        "result_url": urls[0] if urls else None,
        "metadata": metadata,
        "error": error,
    }
    if settings.envelope == "wrapped":
        return {"code": "success", "message": "", "data": body}
    return body


def _facts(
    request: Request, endpoint: Endpoint, key: str, **task: Any
) -> Callable[[], RequestFacts]:
    """What fault rules match on, gathered only if some rule is installed (``pick``)."""
    return lambda: RequestFacts(endpoint, key, request.headers, **task)


def journaled(endpoint: str) -> Callable[[Handler], Handler]:
    """Record every request to ``endpoint`` in the journal, whatever its answer."""

    def wrap(handler: Handler) -> Handler:
        async def answer(request: Request, emulator: Emulator) -> Response:
            started = time.perf_counter()
            status = 500
            store_down = False
            try:
                response = await handler(request)
                status = response.status_code
                return response
            except EmulatorError as exc:
                status = exc.status_code
                store_down = isinstance(exc, StoreUnavailable)
                raise
            except DropConnection:
                status = 0
                raise
            finally:
                await record(
                    emulator.journal,
                    emulator.clock,
                    request,
                    endpoint,
                    status,
                    started,
                    store_down,
                )

        async def run(request: Request) -> Response:
            emulator = _emulator(request)
            scope = emulator.store.request_scope
            if scope is None:  # a local store: nothing to wrap the request in
                return await answer(request, emulator)
            # One snapshot per request: a shared store (Redis) reads what it needs once.
            async with scope():
                return await answer(request, emulator)

        return run

    return wrap


#: The id a queued answer's template is made with, and found again in its JSON to split it.
_PROBE_ID = "task_queued_answer_template_probe"
#: Templates kept per app: one per task type and base URL while the settings stay.
_MAX_TEMPLATES = 256

#: (settings it was made with, bytes before the id, bytes after it), or None for settings
#: whose queued answer cannot be made from a template (then each one is encoded whole).
Template = tuple[Settings, bytes, bytes] | tuple[Settings, None, None]


class _QueuedProbe:
    """What ``task_body`` may read of a task to answer it queued: its id and type. Reading
    any other field is an AttributeError, so no template is made of a field that differs
    between tasks of the same type (tests/test_answer_headers.py holds task_body to it)."""

    __slots__ = ("task_id", "task_type")

    def __init__(self, task_type: str) -> None:
        self.task_id = _PROBE_ID
        self.task_type = task_type


def queued_template(
    settings: Settings, results: Results, task_type: str, base: str
) -> tuple[bytes, bytes] | None:
    """The encoded ``task_body`` of a queued task of ``task_type``, split where its id goes;
    None when that answer reads more of the task than its id and type."""
    try:
        body = task_body(settings, results, cast(Task, _QueuedProbe(task_type)), QUEUED, base)
    except AttributeError:
        return None
    encoded = _encode_json(body).encode("utf-8")
    probe = _PROBE_ID.encode()
    if encoded.count(probe) != 1:
        return None
    head, _, tail = encoded.partition(probe)
    return head, tail


def _submitted_answer(
    request: Request, settings: Settings, results: Results, task: Task, base: str
) -> Response:
    """``_json_answer(task_body(settings, results, task, QUEUED, base), submit_status)``, the
    same bytes and headers, with the body made from a template kept per app for the task's
    type and base URL while the settings object stays: encoding its eleven JSON items cost
    more than a tenth of a submission (docs/profile.md, round 5)."""
    state = request.app.state
    try:
        templates: dict[tuple[str, str], Template] = state["queued_templates"]
    except KeyError:
        templates = state["queued_templates"] = {}
    key = (task.task_type, base)
    kept = templates.get(key)
    if kept is None or kept[0] is not settings:
        if len(templates) >= _MAX_TEMPLATES:
            templates.clear()  # clients sending ever new Host headers cannot grow it
        split = queued_template(settings, results, task.task_type, base)
        kept = templates[key] = (settings, None, None) if split is None else (settings, *split)
    task_id = task.task_id
    head, tail = kept[1], kept[2]
    # An ASCII identifier is its own JSON text (letters, digits, "_"); our ids are.
    if head is None or tail is None or not (task_id.isascii() and task_id.isidentifier()):
        body = task_body(settings, results, task, QUEUED, base)
        return _json_answer(body, status_code=settings.submit_status)
    return _json_bytes_answer(head + task_id.encode() + tail, settings.submit_status)


@journaled("submit")
async def submit_task(request: Request) -> Response:
    emulator = _emulator(request)
    config = emulator.config
    key = bearer_key(request, config.settings)
    submission = await read_submission(
        request, config.settings, config.catalogue, emulator.results.decode_slots
    )
    rule = await emulator.faults.pick(
        _facts(
            request,
            "submit",
            key,
            model=submission.plan.model,
            task_type=submission.task_type,
            prompt=submission.prompt,
            n=submission.plan.n,
        )
    )
    answer = await before(request, rule, config.settings.submit_latency)
    if answer is not None:
        return answer  # the rule answered: no task
    base = base_url(request)
    task = await emulator.submitter.submit(key, submission, base, rule)
    _state(request)["task_id"] = task.task_id
    return after(rule, _submitted_answer(request, config.settings, emulator.results, task, base))


@journaled("poll")
async def get_task(request: Request) -> Response:
    emulator = _emulator(request)
    settings = emulator.config.settings
    key = bearer_key(request, settings)
    # request.path_params and request.method read from the scope: a property call less each.
    scope = request.scope
    task_id = _state(request)["task_id"] = scope.get("path_params", {})["task_id"]
    # HEAD (which Starlette answers from this route) looks without polling.
    counted = scope["method"] == "GET"
    tasks, latency = emulator.tasks, settings.poll_latency
    try:
        task = await tasks.find(key_fingerprint(key), task_id, count_poll=counted)
    except StoreUnavailable:
        raise  # not an unknown task: the rules are in the store that cannot answer now
    except EmulatorError as unknown:
        # A hang, a 503 or a dropped connection does not wait to learn whether the task
        # exists: such rules apply before the refusal (rules on task facts cannot match).
        rule = await emulator.faults.pick(_facts(request, "poll", key, task_known=False))
        answer = await before(request, rule, latency)
        if answer is not None:
            return answer
        raise unknown
    # The facts made here, not by `_facts`: keyword arguments to a helper cost a dict per poll.
    rule = await emulator.faults.pick(
        lambda: RequestFacts("poll", key, request.headers, task.model, task.task_type, task.prompt)
    )
    # `before` and `after` do nothing without a rule or a latency: not called for nothing.
    if rule is not None or latency > 0:
        answer = await before(request, rule, latency)
        if answer is not None:
            return answer
    obs = await tasks.observe(task)
    await emulator.billing.settle(task, obs)
    base = base_url(request)
    if not obs.terminal:
        return after(rule, _json_answer(task_body(settings, emulator.results, task, obs, base)))
    # Final: the same bytes for every later poll while the key's settings and base stay.
    answers: TerminalAnswers = scope["app"].state["terminal_answers"]  # request.app
    kept_as = (
        task.task_id,
        task.token,
        task.seed,
        base,
        settings.envelope,
        settings.error_shape,
        settings.always_list_results,
        settings.public_base_url,
    )
    kept = answers.get(kept_as)
    if kept is None:
        body = task_body(settings, emulator.results, task, obs, base)
        kept = answers.keep(kept_as, _encode_json(body).encode("utf-8"), "application/json")
    return kept_answer(kept) if rule is None else after(rule, kept_answer(kept))


@journaled("result")
async def get_result(request: Request) -> Response:
    """A result image; public like the CDN URLs real services hand out (no key needed), and,
    like them, unguessable: the path carries the task's capability token (SPEC D-14)."""
    emulator = _emulator(request)
    params = request.path_params
    task_id = _state(request)["task_id"] = params["task_id"]
    name = NAME.fullmatch(params["name"])
    if name is None:
        raise TaskNotFound(f"task {shown(task_id)} has no result named {shown(params['name'])}")
    results, index = emulator.results, int(name.group(1))
    task = await results.result(task_id, params["token"], index, name.group(2))
    rule = await emulator.faults.pick(
        _facts(
            request, "result", "", model=task.model, task_type=task.task_type, prompt=task.prompt
        )
    )
    answer = await before(request, rule, 0.0)
    if answer is not None:
        return answer
    # Drawn only now: an answer a rule gave instead (an error, a dropped connection) drew
    # nothing, however large the picture.
    data, media_type = await results.image(task, index)
    # Not "immutable": after a reset the ids restart from the seed, so one URL can name
    # another picture; clients may store it but must revalidate. The headers
    # ``Response(data, media_type=media_type, headers={"Cache-Control": "no-cache"})`` gives,
    # made directly (tests/test_answer_headers.py compares them).
    headers = [
        (b"cache-control", b"no-cache"),
        (b"content-length", str(len(data)).encode("latin-1")),
        (b"content-type", media_type.encode("latin-1")),
    ]
    return after(rule, PrebuiltResponse(data, headers))


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/images/tasks", submit_task, methods=["POST"]),
        Route("/v1/images/tasks/{task_id}", get_task, methods=["GET"]),
        Route("/_emulator/results/{task_id}/{token}/{name}", get_result, methods=["GET"]),
    ]
