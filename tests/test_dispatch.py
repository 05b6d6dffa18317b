"""The direct dispatch of the hot routes (emulator/http/dispatch.py: submission, poll, result
download) answers exactly as Starlette's layers do: the same generated requests sent to an app
with it and to the same app without it (``direct_routes = False``) give the same status,
headers (in order), body, exception, scope and journal entries."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.middleware import Middleware

from emulator import Settings, create_app
from emulator.http.app import EmulatorApp
from emulator.http.effects import DropConnection

from .listings import whole_journal

KEY, OTHER = "sk-test-key", "sk-other-key"
#: In a `Sent` path: the capability token of its ``token_of`` task, in the app it goes to.
TOKEN = "<token>"
UNKNOWN_TOKEN = "A" * 32
JSON_TYPE = [(b"content-type", b"application/json")]
FAULTS = [
    {"id": "e503", "match": {"headers": {"x-fault": "e503"}},
     "effect": {"kind": "http_error", "status": 503, "retry_after": 2}},
    {"id": "e429", "match": {"headers": {"x-fault": "e429"}},
     "effect": {"kind": "http_error", "status": 429, "code": "rate_limited", "message": "slow"}},
    {"id": "drop", "match": {"headers": {"x-fault": "drop"}}, "effect": {"kind": "drop"}},
    {"id": "hang", "match": {"headers": {"x-fault": "hang"}},
     "effect": {"kind": "hang", "seconds": 5}},
    {"id": "respond", "match": {"headers": {"x-fault": "respond"}},
     "effect": {"kind": "respond", "status": 202, "json": {"ok": [1, "é"]},
                "headers": {"X-Extra": "1", "Retry-After": "3"}}},
    {"id": "text", "match": {"headers": {"x-fault": "text"}},
     "effect": {"kind": "respond", "status": 200, "body": "plain\u00e9"}},
    {"id": "malformed", "match": {"headers": {"x-fault": "malformed"}},
     "effect": {"kind": "malformed"}},
    {"id": "empty", "match": {"headers": {"x-fault": "empty"}}, "effect": {"kind": "empty"}},
    {"id": "failing", "match": {"prompt_contains": "doomed"},
     "effect": {"kind": "fail_task", "code": "nsfw", "message": "no"}},
]  # fmt: skip
SETTINGS = Settings(
    seed=1234,
    clock="manual",
    api_keys=(KEY, OTHER),
    max_body_bytes=4096,
    max_header_bytes=2048,
    journal_limit=100_000,
).replace(faults=FAULTS)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def _multipart(fields: dict[str, str], picture: bytes | None) -> tuple[bytes, bytes]:
    boundary = "b0undary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    if picture is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            'filename="in.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
            + picture
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}".encode()


@dataclass
class Sent:
    """One request as both apps receive it."""

    method: str
    path: str
    root_path: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    #: Where the body is cut into two ``http.request`` messages (None: one message).
    split: int | None = None
    query: bytes = b""
    #: The task whose capability token each app puts for ``TOKEN`` in the path (tokens are
    #: random per app, SPEC D-14; a task an app does not have gets ``UNKNOWN_TOKEN``).
    token_of: str | None = None

    def scope(self) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode("utf-8"),
            "root_path": self.root_path,
            "query_string": self.query,
            "headers": list(self.headers),
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "state": {},
        }


@dataclass
class Outcome:
    messages: list[Any]
    raised: str | None
    scope: dict[str, Any]
    #: The scope's keys as the app left them.
    keys: set[str]


def _scope_seen(app: EmulatorApp, scope: dict[str, Any]) -> dict[str, Any]:
    """The scope after the request, comparable across two apps: each key Starlette or the
    handlers set, the app's own objects named by what they are."""
    seen = dict(scope)
    # Read only by ExceptionMiddleware's own wrapper, which the dispatch does not run.
    seen.pop("starlette.exception_handlers", None)
    if "app" in seen:
        assert seen["app"] is app
        seen["app"] = "app"
    if "router" in seen:
        assert seen["router"] is app.router
        seen["router"] = "router"
    if "route" in seen:
        seen["route"] = repr(seen["route"])
    if "endpoint" in seen:  # a function, or an ASGI app (a mounted one's endpoint)
        seen["endpoint"] = getattr(seen["endpoint"], "__qualname__", type(seen["endpoint"]))
    return seen


async def _send_to(app: EmulatorApp, sent: Sent) -> Outcome:
    cut = len(sent.body) if sent.split is None else min(sent.split, len(sent.body))
    incoming = [
        {"type": "http.request", "body": sent.body[:cut], "more_body": cut < len(sent.body)},
    ]
    if cut < len(sent.body):
        incoming.append({"type": "http.request", "body": sent.body[cut:], "more_body": False})
    messages: list[Any] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        messages.append(message)

    scope = sent.scope()
    raised = None
    try:
        await app(scope, receive, send)
    except (Exception, DropConnection) as exc:
        raised = f"{type(exc).__qualname__}: {exc}"
    return Outcome(messages, raised, _scope_seen(app, scope), set(scope))


class Pair:
    """Two emulators built alike, one of them without the dispatch, driven in step."""

    def __init__(self, settings: Settings = SETTINGS) -> None:
        self.loop = asyncio.new_event_loop()
        self.direct = create_app(settings)
        self.starlette = create_app(settings)
        self.starlette.direct_routes = False
        self.task_ids: list[str] = []
        self.journaled = 0
        for app in self.apps:
            self.loop.run_until_complete(app.state.emulator.start())

    @property
    def apps(self) -> tuple[EmulatorApp, EmulatorApp]:
        return self.direct, self.starlette

    def send(self, sent: Sent) -> Outcome:
        direct, starlette = (
            self.loop.run_until_complete(_send_to(app, self._for(app, sent))) for app in self.apps
        )
        assert self._tokenless(self.direct, direct.messages) == self._tokenless(
            self.starlette, starlette.messages
        ), sent
        assert direct.raised == starlette.raised, sent
        assert self._tokenless(self.direct, direct.scope) == self._tokenless(
            self.starlette, starlette.scope
        ), sent
        self._check_journals(sent)
        self._remember_task(direct)
        return direct

    def _tokens(self, app: EmulatorApp) -> dict[str, str]:
        tasks = self.loop.run_until_complete(app.state.emulator.store.list_tasks())
        return {task.task_id: task.token for task in tasks if task.token}

    def _for(self, app: EmulatorApp, sent: Sent) -> Sent:
        """``sent`` as it goes to ``app``: with that app's token of its task in the path."""
        if sent.token_of is None:
            return sent
        token = self._tokens(app).get(sent.token_of, UNKNOWN_TOKEN)
        return dataclasses.replace(sent, path=sent.path.replace(TOKEN, token))

    def _tokenless(self, app: EmulatorApp, value: Any) -> Any:
        """``value`` (messages, a scope, journal entries) with each of the app's capability
        tokens (random by design, SPEC D-14: never from the seed, so two apps never share
        one), in result URLs and paths, replaced by a mark."""
        return _masked(value, list(self._tokens(app).values()))

    def _check_journals(self, sent: Sent) -> None:
        entries = [
            self._tokenless(
                app, self.loop.run_until_complete(whole_journal(app.state.emulator.store))
            )
            for app in self.apps
        ]
        assert len(entries[0]) == len(entries[1]), sent
        new = [[_timeless(e) for e in journal[self.journaled :]] for journal in entries]
        assert new[0] == new[1], sent
        self.journaled = len(entries[0])

    def _remember_task(self, outcome: Outcome) -> None:
        body = b"".join(m.get("body", b"") for m in outcome.messages if "body" in m)
        try:
            task_id = json.loads(body)["data"]["task_id"]
        except (ValueError, KeyError, TypeError):
            return
        if isinstance(task_id, str) and task_id not in self.task_ids:
            self.task_ids.append(task_id)

    def close(self) -> None:
        for app in self.apps:
            self.loop.run_until_complete(app.state.emulator.store.close())
        self.loop.close()


def _masked(value: Any, tokens: list[str]) -> Any:
    """``value`` with each of ``tokens`` replaced by ``TOKEN``, in every text and bytes in it."""
    if isinstance(value, str):
        for token in tokens:
            value = value.replace(token, TOKEN)
        return value
    if isinstance(value, bytes):
        for token in tokens:
            value = value.replace(token.encode(), TOKEN.encode())
        return value
    if isinstance(value, dict):
        return {key: _masked(item, tokens) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_masked(item, tokens) for item in value)
    return value


def _timeless(entry: dict[str, Any]) -> dict[str, Any]:
    """A journal entry without what the wall clock decides (the manual clock's stays)."""
    return {k: v for k, v in entry.items() if k not in ("time", "duration_ms")}


@pytest.fixture
def pair() -> Iterator[Pair]:
    made = Pair()
    yield made
    made.close()


SUBMISSIONS = st.sampled_from(
    [
        {"model": "NanoBanana2-0.5K", "prompt": "a cat"},
        {"model": "NanoBanana2-0.5K", "prompt": "doomed"},
        {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024", "n": 2},
        {"model": "NanoBanana2-0.5K", "prompt": "x", "extra": 1, "more": [1, 2]},
        {"model": "nope", "prompt": "x"},
        {"model": "NanoBanana2-0.5K"},
        {"prompt": "x" * 5000},
        ["not", "an", "object"],
    ]
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, bytes | None]:
    """A body and its Content-Type (None: no such header)."""
    kind = draw(st.sampled_from(["json"] * 3 + ["text", "multipart", "empty", "huge", "raw"]))
    if kind == "json":
        body = json.dumps(draw(SUBMISSIONS)).encode()
        return body, draw(st.sampled_from([b"application/json", b"application/json; x=1", None]))
    if kind == "multipart":
        fields = {"model": "NanoBanana2-0.5K", "prompt": draw(st.sampled_from(["x", "doomed"]))}
        return _multipart(fields, draw(st.sampled_from([_png(), b"not a png", None])))
    if kind == "huge":
        return b'{"prompt": "' + b"y" * 5000 + b'"}', b"application/json"
    if kind == "raw":
        return draw(st.binary(max_size=64)), draw(st.sampled_from([b"text/plain", None]))
    if kind == "text":
        return b'{"model": "NanoBanana2-0.5K", "prompt": ', b"application/json"
    return b"", draw(st.sampled_from([b"application/json", None]))


AUTHORIZATIONS = st.sampled_from(
    [f"Bearer {KEY}".encode()] * 9
    + [f"Bearer {OTHER}".encode()] * 2
    + [f"bearer   {KEY}  ".encode(), None, b"Bearer sk-unknown", b"Bearer", b"Bearer "]
    + [b"Basic abc", b"", b"Bearer \xe9\xff"]
)


#: Paths other than the two routes' own (an encoded slash arrives decoded in "path").
ODD_PATHS = [
    "/v1/images/tasks/",
    "/v1/images/tasks//",
    "/v1/images/tasks/a/b",
    "/v1/images/tasks\n",
    "/V1/images/tasks",
    "/v1/images/tasksx",
    "/v1/images/task",
    "/_emulator/health",
    "",
    "/_emulator/results/",
    "/_emulator/results/a/b",
    "/_emulator/results/a/b/c/d",
    "/_emulator/results//b/0.png",
    "/_emulator/results/a//0.png",
    "/_emulator/results/a/b/",
    "/_emulator/resultsx/a/b/0.png",
    "/_emulator/results",
]
#: Result names: the first is a task's first picture; the others other pictures, other
#: formats, names the route matches and the handler refuses, one past the route's regex.
RESULT_NAMES = ["0.png"] * 4 + ["1.png", "2.png", "0.jpeg", "00.png", "0.png\n", "\u00b2.png"]
RESULT_NAMES += ["0.PNG", "x", "0.png/", "é.png", "0.png?"]
#: Tokens: the task's own, then bad ones (the route matches them all but the empty one).
RESULT_TOKENS = [TOKEN] * 4 + [TOKEN + "\n", UNKNOWN_TOKEN, "", TOKEN + "x", "\n", "é"]


@st.composite
def requests(draw: st.DrawFn, pair: Pair) -> Sent:
    """A request near the two routes. Hypothesis favours the first of each list (and shrinks
    to it), so the first is the common case and repeats weigh the draws."""
    root_path = draw(st.sampled_from(["", "", "", "/api"]))
    # Drawn alike whatever the pair has seen (Hypothesis replays the draws): a task it made,
    # when there is one, or any text.
    made = draw(st.sampled_from([True, True, True, False]))
    pick, text = draw(st.integers(0, 7)), draw(st.text(max_size=12))
    known = pair.task_ids
    task_id = known[pick % len(known)] if made and known else text
    route = draw(st.sampled_from(["submit", "poll", "poll", "submit", "result", "result", "odd"]))
    token_of = None
    if route == "submit":
        tail = "/v1/images/tasks"
        method = draw(st.sampled_from(["POST"] * 5 + ["PUT", "GET", "HEAD", "OPTIONS"]))
    elif route == "result":
        token, name = draw(st.sampled_from(RESULT_TOKENS)), draw(st.sampled_from(RESULT_NAMES))
        tail, token_of = f"/_emulator/results/{task_id}/{token}/{name}", task_id
        method = draw(st.sampled_from(["GET"] * 4 + ["HEAD", "POST", "PUT", "DELETE", "OPTIONS"]))
    else:
        tail = f"/v1/images/tasks/{task_id}"
        tail = draw(st.sampled_from([tail] * 4 + [tail + "/", tail + "\n"]))
        if route == "odd":
            tail = draw(st.sampled_from(ODD_PATHS))
        method = draw(st.sampled_from(["GET"] * 4 + ["HEAD", "POST", "PUT", "DELETE", "OPTIONS"]))
    prefix = draw(st.sampled_from([root_path] * 3 + ["", "/apix"])) if root_path else ""
    headers = [(b"host", draw(st.sampled_from([b"127.0.0.1:8000", b"emulator.test"])))]
    authorization = draw(AUTHORIZATIONS)
    if authorization is not None:
        headers.append((b"authorization", authorization))
    body, content_type = draw(bodies()) if method in ("POST", "PUT") else (b"", None)
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if body and draw(st.booleans()):
        headers.append((b"content-length", str(len(body)).encode()))
    fault = draw(
        st.sampled_from(
            [None] * 8 + [b"e503", b"e429", b"drop", b"hang", b"respond", b"text", b"malformed"]
            + [b"empty"]
        )
    )  # fmt: skip
    if fault is not None:
        headers.append((b"x-fault", fault))
    if draw(st.sampled_from([False] * 15 + [True])):
        headers.append((b"x-padding", b"p" * 3000))  # past max_header_bytes: 431
    draw(st.randoms()).shuffle(headers)
    split = draw(st.none() | st.integers(0, max(len(body), 1)))
    query = draw(st.sampled_from([b"", b"", b"a=1&b=%C3%A9"]))
    return Sent(method, prefix + tail, root_path, headers, body, split, query, token_of)


def _submission(prompt: str) -> Sent:
    body = json.dumps({"model": "gpt-image-2", "prompt": prompt, "size": "1024x1024", "n": 2})
    headers = [(b"authorization", f"Bearer {KEY}".encode())]
    return Sent("POST", "/v1/images/tasks", headers=headers + JSON_TYPE, body=body.encode())


def _advance(seconds: float) -> Sent:
    body = json.dumps({"seconds": seconds}).encode()
    return Sent("POST", "/_emulator/clock/advance", headers=JSON_TYPE, body=body)


def test_generated_requests_answer_the_same_with_and_without_the_dispatch() -> None:
    served = {"direct": 0, "starlette": 0}

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        pair = Pair()
        try:
            # Tasks to poll first, moved on by a drawn time: a poll may find any status.
            for prompt in ("a cat", "doomed"):
                pair.send(_submission(prompt))
            pair.send(_advance(data.draw(st.sampled_from([1000, 0, 5, 20]))))
            for _ in range(data.draw(st.integers(1, 8))):
                if data.draw(st.sampled_from([False] * 4 + [True])):  # the manual clock moves on
                    pair.send(_advance(data.draw(st.sampled_from([1000, 1, 5, 30]))))
                got = pair.send(data.draw(requests(pair)))
                # Only Starlette's ExceptionMiddleware sets the first; a 431 sets neither.
                if "starlette.exception_handlers" in got.keys:
                    served["starlette"] += 1
                elif "app" in got.keys:
                    served["direct"] += 1
        finally:
            pair.close()

    check()
    # Both ways were taken, often: the comparison above is not of Starlette with itself.
    assert min(served.values()) >= 50, served


def test_a_poll_of_every_status_answers_the_same(pair: Pair) -> None:
    auth = [(b"authorization", f"Bearer {KEY}".encode())]
    for prompt in ("a cat", "doomed"):
        pair.send(_submission(prompt))
    assert len(pair.task_ids) == 2
    statuses = set()
    for _ in range(40):
        for task_id in pair.task_ids:
            for method in ("GET", "HEAD"):
                got = pair.send(Sent(method, f"/v1/images/tasks/{task_id}", headers=auth))
                statuses.add(json.loads(got.messages[1]["body"])["data"]["status"])
        pair.send(_advance(3))
    assert statuses == {"queued", "processing", "succeeded", "failed"}


def test_a_result_download_answers_the_same_and_is_served_by_the_dispatch(pair: Pair) -> None:
    for prompt in ("a cat", "doomed"):
        pair.send(_submission(prompt))
    cat, doomed = pair.task_ids
    pictures = sent = 0
    for seconds in (0, 1000):  # nothing to download yet, then one succeeded and one failed
        pair.send(_advance(seconds))
        for root_path in ("", "/api"):
            for method, task_id in itertools.product(("GET", "HEAD"), (cat, doomed, "task_x")):
                for token, name in itertools.product(
                    (TOKEN, UNKNOWN_TOKEN, TOKEN + "\n", TOKEN[:-1]),
                    ("0.png", "1.png", "2.png", "0.jpeg", "0.png\n", "0.png\n\n"),
                ):
                    path = f"{root_path}/_emulator/results/{task_id}/{token}/{name}"
                    got = pair.send(Sent(method, path, root_path, token_of=task_id))
                    sent += 1
                    # Served by the dispatch: Starlette's ExceptionMiddleware never ran.
                    assert "starlette.exception_handlers" not in got.keys
                    assert {"app", "route", "endpoint", "path_params"} <= got.keys
                    if got.messages[0]["status"] == 200:
                        pictures += 1
                        assert got.messages[1]["body"][:4] == b"\x89PNG"
    # The cat's two pictures, by GET and HEAD, with and without root_path.
    assert pictures == 8
    journal = pair.loop.run_until_complete(whole_journal(pair.direct.state.emulator.store))
    assert sum(entry["endpoint"] == "result" for entry in journal) == sent


def test_a_bug_answers_the_same_500_and_is_raised_on_both_paths(pair: Pair) -> None:
    auth = [(b"authorization", f"Bearer {KEY}".encode())]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a bug")

    for app in pair.apps:
        app.state.emulator.tasks.find = broken
    got = pair.send(Sent("GET", "/v1/images/tasks/task_x", headers=auth))
    assert got.raised == "ValueError: a bug"
    assert got.messages[0]["status"] == 500
    assert json.loads(got.messages[1]["body"])["code"] == "internal_error"


def test_the_dispatch_serves_the_two_routes_of_an_app_without_middleware() -> None:
    pair = Pair()
    try:
        auth = [(b"authorization", f"Bearer {KEY}".encode())]
        sent = Sent("GET", "/v1/images/tasks/task_unknown", headers=auth)
        direct, starlette = (pair.loop.run_until_complete(_send_to(a, sent)) for a in pair.apps)
        assert direct.messages[0]["status"] == starlette.messages[0]["status"] == 404
        # Only Starlette's ExceptionMiddleware sets this key: the direct app did not use it.
        assert "starlette.exception_handlers" in starlette.keys - direct.keys
        assert pair.direct.dispatch is not None
    finally:
        pair.close()


@pytest.mark.parametrize(
    "changes", [{"cors_origins": ("https://a.example",)}, {"log_format": "json"}]
)
def test_opt_in_middleware_sends_every_request_through_starlette(changes: dict[str, Any]) -> None:
    pair = Pair(SETTINGS.replace(**changes))
    try:
        auth = [(b"authorization", f"Bearer {KEY}".encode()), (b"origin", b"https://a.example")]
        pair.send(Sent("GET", "/v1/images/tasks/task_unknown", headers=auth))
        assert pair.direct.dispatch is None
    finally:
        pair.close()


def test_a_middleware_added_before_the_first_request_turns_the_dispatch_off() -> None:
    app = create_app(SETTINGS)

    class Passing:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    app.user_middleware.append(Middleware(Passing))
    loop = asyncio.new_event_loop()
    try:
        got = loop.run_until_complete(_send_to(app, Sent("GET", "/v1/images/tasks/x")))
        assert got.messages[0]["status"] == 401
        assert app.dispatch is None
    finally:
        loop.close()


def _debug(app: EmulatorApp) -> None:
    app.debug = True


def _body_limit(app: EmulatorApp) -> None:
    app.max_body_size = 10


def _status_handler(app: EmulatorApp) -> None:
    app.exception_handlers[404] = app.exception_handlers[Exception]


def _routes_reordered(app: EmulatorApp) -> None:
    app.router.routes.reverse()


@pytest.mark.parametrize("change", [_debug, _body_limit, _status_handler, _routes_reordered])
def test_an_app_the_dispatch_does_not_reproduce_is_served_by_starlette(change: Any) -> None:
    app = create_app(SETTINGS)
    change(app)
    loop = asyncio.new_event_loop()
    try:
        got = loop.run_until_complete(_send_to(app, Sent("GET", "/v1/images/tasks/x")))
        assert "starlette.exception_handlers" in got.keys
        assert app.dispatch is None
    finally:
        loop.close()
