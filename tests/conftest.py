"""Shared helpers: an emulator app per test, driven through HTTP on the manual clock."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from emulator import Settings, create_app
from emulator.testing.app_loop import AppLoop
from emulator.testing.handle import ImageEmulator

KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Client(TestClient):
    """A TestClient with the emulator's vocabulary: submit, poll, advance, download."""

    def submit(self, payload: dict[str, Any], **kwargs: Any) -> Any:
        return self.post("/v1/images/tasks", json=payload, **kwargs)

    def task(self, task_id: str, **kwargs: Any) -> dict[str, Any]:
        response = self.get(f"/v1/images/tasks/{task_id}", **kwargs)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body["data"] if "data" in body and "code" in body else body

    def advance(self, seconds: float) -> None:
        response = self.post("/_emulator/clock/advance", json={"seconds": seconds})
        assert response.status_code == 200, response.text

    def submit_ok(self, payload: dict[str, Any]) -> str:
        response = self.submit(payload)
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"]["task_id"]
        return task_id

    def run_to_end(self, payload: dict[str, Any]) -> dict[str, Any]:
        task_id = self.submit_ok(payload)
        self.advance(10_000)
        return self.task(task_id)

    def image(self, url: str) -> Image.Image:
        response = self.get(url)
        assert response.status_code == 200, response.text
        img = Image.open(io.BytesIO(response.content))
        assert img.get_format_mimetype() == response.headers["content-type"]
        return img


MakeClient = Callable[..., Client]


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """Build a client for an emulator with settings overrides (manual clock, fixed seed)."""
    clients: list[Client] = []

    def make(**overrides: Any) -> Client:
        settings = Settings(seed=1234, clock="manual").replace(**overrides)
        client = Client(create_app(settings), headers=AUTH)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> Client:
    return make_client()


@contextmanager
def client_on_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, **settings: Any
) -> Iterator[Client]:
    """A client of an emulator on the store ``kind`` ("memory", "sqlite", "redis": the test
    module's ``redis_server`` fixture, a fresh prefix), manual clock, with its lifespan (a Redis
    connection belongs to one event loop)."""
    overrides: dict[str, Any] = {}
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        overrides = {"store": server.url, "store_prefix": uuid.uuid4().hex}
    elif kind == "sqlite":
        overrides = {"store": f"sqlite:///{tmp_path}/state.db"}
    chosen = Settings(seed=1234, clock="manual").replace(**settings, **overrides)
    with Client(create_app(chosen), headers=AUTH) as client:
        yield client


def png_bytes(color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


class LiveServer:
    """An emulator served by uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        import threading

        import uvicorn

        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="critical", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:  # readiness, not timing: bounded
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live() -> Iterator[Callable[..., LiveServer]]:
    """Start live servers with settings overrides; all are stopped after the test."""
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        settings = Settings(seed=1234, clock="manual").replace(**overrides)
        server = LiveServer(settings).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture
def handle() -> Iterator[ImageEmulator]:
    """The pytest plugin's handle on an in-process emulator (manual clock, seed 1)."""
    app = create_app(Settings(seed=1, clock="manual"))
    loop = AppLoop()
    handle = ImageEmulator(app, loop, "http://image-emulator.test", in_process=True)
    yield handle
    handle.close()
    loop.close(last=app.state.emulator.store.close())


@pytest.fixture(autouse=True)
def _pytester_terminal_width(request: pytest.FixtureRequest) -> Iterator[None]:
    """An inner pytest run writes alike wherever the suite runs: its short summary lines are cut
    to the terminal's width (``COLUMNS``), and not cut at all when ``CI`` or ``BUILD_NUMBER``
    is set, as on the CI machine (a test that passed here failed there)."""
    if "pytester" not in request.fixturenames:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "80")
        patch.delenv("CI", raising=False)
        patch.delenv("BUILD_NUMBER", raising=False)
        yield
