"""pytest plugin: a controllable image-task emulator as a fixture.

Installed with the package (entry point ``pytest11``). Fixtures:

- ``image_emulator``: an emulator reached in-process (no port, no server thread), fresh per test.
- ``image_emulator_live``: the same handle on a real loopback port, for any HTTP client
  (requests, aiohttp, a subprocess); one server per session, reset between tests.
- ``image_emulator_settings``: override to change settings for a module or a conftest.
- marker ``@pytest.mark.image_emulator(**settings)``: settings for one test.

The clock defaults to ``manual``: tests never sleep, they ``advance()``.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from .config import Settings

# The emulator itself (Starlette, the app, the transports) is imported by the fixtures when a
# test first asks for one: pytest imports this plugin at the start of every session, including
# the many that never use it.

DEFAULTS: dict[str, Any] = {"clock": "manual", "seed": 0}
API_KEY = "sk-emulator-test"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The TLS context httpx would build for each client, built once: loading the CA bundle
    takes tens of milliseconds, paid per client (two per live test) otherwise."""
    return httpx.create_ssl_context()


@dataclass
class FaultHandle:
    """A fault rule added by a test; ``hits`` asks the emulator how often it fired."""

    id: str
    _emulator: ImageEmulator

    @property
    def hits(self) -> int:
        for rule in self._emulator.control("GET", "/_emulator/faults")["faults"]:
            if rule["id"] == self.id:
                return int(rule["hits"])
        return 0

    def remove(self) -> None:
        self._emulator.control("DELETE", f"/_emulator/faults/{self.id}")


class Faults:
    """``image_emulator.faults``: the control plane's fault vocabulary from Python."""

    def __init__(self, emulator: ImageEmulator) -> None:
        self._emulator = emulator

    def add(
        self,
        effect: str | dict[str, Any],
        *,
        probability: float = 1.0,
        times: int | None = None,
        id: str | None = None,
        **match: Any,
    ) -> FaultHandle:
        """Add a rule: ``faults.add("drop", endpoint="poll", times=1)`` or
        ``faults.add({"kind": "http_error", "status": 429, "retry_after": 3})``."""
        rule: dict[str, Any] = {"effect": effect, "match": match, "probability": probability}
        if times is not None:
            rule["times"] = times
        if id is not None:
            rule["id"] = id
        created = self._emulator.control("POST", "/_emulator/faults", json=rule)["faults"][0]
        return FaultHandle(created["id"], self._emulator)

    def clear(self) -> None:
        self._emulator.control("DELETE", "/_emulator/faults")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._emulator.control("GET", "/_emulator/faults")["faults"])


class ImageEmulator:
    """A handle on one emulator: where it is, and how to steer it."""

    def __init__(self, base_url: str, transport: httpx.BaseTransport | None, app: Any) -> None:
        self.base_url = base_url
        self.api_key = API_KEY
        self.app = app
        self._transport = transport
        self._control = self._make_client(auth=False)
        self.faults = Faults(self)

    # -- clients -----------------------------------------------------------------------
    def _make_client(self, auth: bool = True, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if auth else {}
        headers.update(kwargs.pop("headers", {}))
        if self._transport is None:
            kwargs.setdefault("verify", _ssl_context())
        return httpx.Client(
            base_url=self.base_url, transport=self._transport, headers=headers, **kwargs
        )

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync httpx client pointed at the emulator, with the test API key."""
        return self._make_client(**kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An async httpx client pointed at the emulator, with the test API key."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        headers.update(kwargs.pop("headers", {}))
        from .transport import AsyncASGITransport

        transport = AsyncASGITransport(self.app) if self._transport is not None else None
        if transport is None:
            kwargs.setdefault("verify", _ssl_context())
        return httpx.AsyncClient(
            base_url=self.base_url, transport=transport, headers=headers, **kwargs
        )

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._control.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    # -- steering ----------------------------------------------------------------------
    def advance(self, seconds: float) -> float:
        """Move the manual clock forward; returns the new virtual time."""
        return float(
            self.control("POST", "/_emulator/clock/advance", json={"seconds": seconds})["now"]
        )

    def finish(self, task_id: str) -> dict[str, Any]:
        """End a task now, succeeded."""
        view: dict[str, Any] = self.control(
            "POST", f"/_emulator/tasks/{task_id}/outcome", json={"status": "succeeded"}
        )
        return view

    def fail(
        self, task_id: str, code: str = "upstream_error", message: str | None = None
    ) -> dict[str, Any]:
        """End a task now, failed with ``code``."""
        body = {"status": "failed", "code": code, "message": message}
        view: dict[str, Any] = self.control(
            "POST", f"/_emulator/tasks/{task_id}/outcome", json=body
        )
        return view

    def run_until_settled(self, max_steps: int = 1000) -> list[dict[str, Any]]:
        """Advance the clock until every task has ended; the tasks' final views."""
        for _ in range(max_steps):
            views = self.tasks
            pending = [v for v in views if v["status"] not in ("succeeded", "failed")]
            if not pending:
                return views
            remaining = max(
                v["task"]["schedule"]["queued_s"]
                + v["task"]["schedule"]["processing_s"]
                - v["elapsed"]
                for v in pending
            )
            self.advance(max(remaining, 0.001))
        raise AssertionError(f"tasks still running after {max_steps} clock steps")

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every task, with its schedule and current status."""
        tasks: list[dict[str, Any]] = self.control("GET", "/_emulator/tasks")["tasks"]
        return tasks

    def requests(
        self, *, body: Mapping[str, Any] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """The journal, newest last: entries matching every filter (``path``, ``method``,
        ``task_id``, ``endpoint``, ``status``, ``fault``) and every ``body`` field.

        Any other filter is a ValueError naming the known ones: body fields are filtered
        explicitly, ``body={"model": "X"}``, never by a bare ``model="X"``.
        """
        from .journal import query_from_filters

        query = query_from_filters(filters, body)
        entries: list[dict[str, Any]] = self.control("GET", "/_emulator/requests")["requests"]
        return query.select(entries)

    def assert_requested(
        self, times: int | None = None, *, body: Mapping[str, Any] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """Assert the client sent matching requests (``times`` exactly, or at least one)."""
        entries = self.requests(body=body, **filters)
        described = filters | ({"body": body} if body is not None else {})
        if times is None and not entries:
            raise AssertionError(f"no request matched {described}")
        if times is not None and len(entries) != times:
            raise AssertionError(f"{len(entries)} requests matched {described}, expected {times}")
        return entries

    def sent(
        self, *, body: Mapping[str, Any] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """The body fields of the submissions the client sent (newest last)."""
        filters.setdefault("endpoint", "submit")
        return [e["body"]["fields"] for e in self.requests(body=body, **filters) if e.get("body")]

    @property
    def usage(self) -> dict[str, Any]:
        """The usage log: entries (held/settled/released) and totals per key and model."""
        body: dict[str, Any] = self.control("GET", "/_emulator/usage")
        return body

    def set_balance(self, amount: int | None, key: str | None = None) -> None:
        """Give ``key`` (default: the fixture's) a balance in credits; None: unlimited."""
        key = key or self.api_key
        self.control("PUT", f"/_emulator/balances/{key}", json={"balance": amount})

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings that may change while serving (PATCH /_emulator/config)."""
        config: dict[str, Any] = self.control("PATCH", "/_emulator/config", json=settings)
        return config

    def reset(self) -> None:
        """Forget tasks, journal, faults and clock: a fresh emulator."""
        self.control("POST", "/_emulator/reset")

    def close(self) -> None:
        self._control.close()
        if self._transport is not None:
            self._transport.close()


class _LiveServer:
    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from .app import create_app

        self.app = create_app(settings)
        #: What every test starts from (and the server goes back to after it).
        self.settings: Settings = self.app.state.emulator.settings
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="image-emulator")
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live image emulator did not start")
            time.sleep(0.001)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    def restore(self, **changes: Any) -> None:
        """The start-up settings (with ``changes``), whatever a test configured: like
        pytest-httpserver's ``clear()``, not just an undo of what the fixture applied."""
        self.app.state.emulator.reconfigure(self.settings.replace(**changes))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _settings_for(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    values = dict(DEFAULTS) | overrides
    marker = request.node.get_closest_marker("image_emulator")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("@pytest.mark.image_emulator takes keyword settings only")
        values |= marker.kwargs
    return values


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "image_emulator(**settings): settings of the image_emulator fixture"
    )


@pytest.fixture
def image_emulator_settings() -> dict[str, Any]:
    """Settings of the emulator fixtures; override in a conftest or module."""
    return {}


@pytest.fixture
def image_emulator(
    request: pytest.FixtureRequest, image_emulator_settings: dict[str, Any]
) -> Iterator[ImageEmulator]:
    """A fresh in-process emulator for this test (manual clock, seed 0)."""
    from .app import create_app
    from .config import Settings
    from .transport import ASGITransport

    settings = Settings().replace(**_settings_for(request, image_emulator_settings))
    app = create_app(settings)
    transport = ASGITransport(app)
    handle = ImageEmulator("http://image-emulator.test", transport, app)
    yield handle
    # In-process transports skip the lifespan: close the store here, or an SQLite file or a
    # Redis pool would stay open after every test.
    transport.run(app.state.emulator.store.close())
    handle.close()


@pytest.fixture(scope="session")
def _image_emulator_server() -> Iterator[_LiveServer]:
    from .config import Settings

    server = _LiveServer(Settings().replace(**DEFAULTS))
    yield server
    server.stop()


@pytest.fixture
def image_emulator_live(
    request: pytest.FixtureRequest, image_emulator_settings: dict[str, Any]
) -> Iterator[ImageEmulator]:
    """An emulator on a real loopback port (shared by the session, reset before each test)."""
    from .admin import FIXED_SETTINGS
    from .config import Settings

    values = _settings_for(request, image_emulator_settings)
    fixed = {k: v for k, v in values.items() if k in FIXED_SETTINGS and DEFAULTS.get(k) != v}
    own: _LiveServer | None = None
    if fixed:  # settings that cannot change while serving get a server of their own
        own = _LiveServer(Settings().replace(**values))
        server = own
    else:
        server = request.getfixturevalue("_image_emulator_server")
    handle = ImageEmulator(server.base_url, None, server.app)
    # Start-up state before the test, whatever the previous one left (even a failed teardown).
    server.restore(**{k: v for k, v in values.items() if k not in FIXED_SETTINGS})
    handle.reset()
    yield handle
    if own is not None:
        own.stop()
    else:
        server.restore()
        handle.reset()
    handle.close()
