"""Two emulators built alike, one with the direct dispatch of the hot routes
(emulator/http/dispatch.py) and one without it (``direct_routes = False``), sent the same raw
ASGI requests: what tests/test_dispatch.py and tests/test_dispatch_fallback.py compare."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

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


async def send_to(app: EmulatorApp, sent: Sent) -> Outcome:
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
            self.loop.run_until_complete(send_to(app, self._for(app, sent))) for app in self.apps
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
