"""pytest plugin: a controllable image-task emulator as a fixture.

Installed with the package (entry point ``pytest11``). Fixtures:

- ``image_emulator``: an emulator reached in-process (no port, no server thread), fresh per test.
- ``image_emulator_live``: the same handle on a real loopback port, for any HTTP client
  (requests, aiohttp, a subprocess); one server per session, back to its start-up state
  before and after each test.
- ``image_emulator_settings``: override to change settings for a module or a conftest.
- marker ``@pytest.mark.image_emulator(**settings)``: settings for one test.

The clock defaults to ``manual``: tests never sleep, they ``advance()``. The handle both
fixtures yield is `emulator.handle.ImageEmulator`; it steers the emulator directly on the one
event loop its store belongs to (`emulator.app_loop.AppLoop`), so the same calls work in sync
and async tests.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from ..config import Settings
    from .app_loop import AppLoop
    from .handle import ImageEmulator
    from .pool import Pool

# The emulator itself (Starlette, the app, the transports) is imported by the fixtures when a
# test first asks for one: pytest imports this plugin at the start of every session, including
# the many that never use it.

DEFAULTS: dict[str, Any] = {"clock": "manual", "seed": 0}
#: Names that lived here before the handle moved to emulator/handle.py (imported on first use).
_MOVED = ("ImageEmulator", "Faults", "FaultHandle", "API_KEY")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from . import handle

        return getattr(handle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Marked(Protocol):
    """A test or a collector: what its markers are read from."""

    def get_closest_marker(self, name: str) -> pytest.Mark | None: ...


#: The host of the in-process fixture's base URL (never resolved: nothing leaves the process).
IN_PROCESS_BASE_URL = "http://image-emulator.test"


def _fail_if_cannot_start(fixture: str, error: Exception, settings: Settings) -> None:
    """Fail the fixture's setup with why its emulator cannot start, as ``serve`` says it (a
    store kept with another clock, Redis unreachable, a SQLite file it cannot open or
    upgrade, a file setting naming no file): the message, no traceback of the plugin's own.
    Anything else (a bug) is left to raise as it is."""
    from ..errors import EmulatorError
    from ..usecases.startup import start_problem

    if isinstance(error, (EmulatorError, OSError, ValueError)):
        problem = start_problem(error, settings.store_url)
        # pytest.fail's own exception, but not chained: the message would be shown twice.
        raise pytest.fail.Exception(f"{fixture}: cannot start: {problem}", pytrace=False) from None


class _LiveServer:
    """An emulator served by uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from ..http.app import create_app
        from .app_loop import AppLoop

        try:
            self.app = create_app(settings)
        except Exception as exc:
            _fail_if_cannot_start("image_emulator_live", exc, settings)
            raise
        #: What every test starts from (and the server goes back to after it).
        self.settings: Settings = self.app.state.emulator.settings
        # Lifespan off: the emulator is started below, where what its start raised reaches
        # the fixture (uvicorn's lifespan only logs it and exits), and closed by `stop`.
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="image-emulator")
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:  # readiness, bounded
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live image emulator did not start")
            time.sleep(0.001)
        listener = self.server.servers[0]
        port = listener.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        #: Steering runs on the server's own loop, like its requests.
        self.loop: AppLoop = AppLoop(listener.get_loop())
        try:
            self.loop.run(self.app.state.emulator.start())
        except Exception as exc:
            self.stop()
            _fail_if_cannot_start("image_emulator_live", exc, settings)
            raise

    def stop(self) -> None:
        try:
            if self.thread.is_alive():  # a dead server's loop would never run the close
                self.loop.run(self.app.state.emulator.store.close())  # the lifespan's job
        finally:
            self.server.should_exit = True
            self.thread.join(10)


def _settings_for(node: _Marked, overrides: Mapping[str, Any]) -> dict[str, Any]:
    values = {**DEFAULTS, **overrides}
    marker = node.get_closest_marker("image_emulator")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("@pytest.mark.image_emulator takes keyword settings only")
        values |= marker.kwargs
    return values


def _settings(values: dict[str, Any]) -> Settings:
    """``Settings().replace(**values)``, remembered for hashable values: most tests of a
    session share theirs, and building and checking them is a share of a fixture's cost."""
    try:
        return _cached_settings(tuple(sorted(values.items())))
    except TypeError:  # a list or a dict among the values
        from ..config import Settings

        return Settings().replace(**values)


@functools.lru_cache(maxsize=64)
def _cached_settings(items: tuple[tuple[str, Any], ...]) -> Settings:
    from ..config import Settings

    return Settings().replace(**dict(items))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """The emulator's modules imported plainly, not assertion-rewritten (testing/privates.py);
    before the conftests load, which may import them."""
    from .privates import skip_assertion_rewriting

    skip_assertion_rewriting(early_config, __name__.partition(".")[0])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "image_emulator(**settings): settings of the image_emulator fixture"
    )
    config.pluginmanager.register(_InProcessFixture(config), "image_emulator-in-process")


@pytest.fixture(scope="session")
def image_emulator_settings() -> Mapping[str, Any]:
    """Settings of the emulator fixtures; override in a conftest or module (any scope).

    The default is one for the session, read-only: pytest's setup and teardown of a
    function-scoped fixture were 2 % of a whole in-process test (callgrind)."""
    return MappingProxyType({})


class _InProcessFixture:
    """The ``image_emulator`` fixture and what it needs, one per pytest config (one per xdist
    worker): the config itself, the test being set up, the session's pool of in-process
    emulators (emulator/testing/pool.py, closed with the config).

    Why an object and a hook rather than a fixture asking for ``request``: pytest makes two
    fresh ``request`` fixture definitions (each inspecting a signature) for every test whose
    fixture asks for it, plus one for the test; that was 196k of a life-cycle test's ~6.7M
    instructions (callgrind). A fixture of a registered plugin object gets the config from
    its object, and the test (for its marker) from ``pytest_runtest_setup``, which pytest
    calls with each test before it sets up the test's fixtures."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._item: pytest.Item | None = None
        self._pool: Pool | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self._item = item

    def pool(self) -> Pool:
        if self._pool is None:
            from .pool import Pool

            pool = self._pool = Pool()
            self._config.add_cleanup(pool.close)
        return self._pool

    @pytest.fixture
    def image_emulator(self, image_emulator_settings: Mapping[str, Any]) -> Iterator[ImageEmulator]:
        """A fresh in-process emulator for this test (manual clock, seed 0): a new one, or one
        an earlier test with the same settings used, put back in its start-up state."""
        from .handle import ImageEmulator

        if self._item is None:
            raise RuntimeError("image_emulator was set up outside a test's setup")
        pool = self.pool()
        settings = _settings(_settings_for(self._item, image_emulator_settings))
        try:
            used = pool.take(settings)  # started: a start that fails fails the setup
        except Exception as exc:
            _fail_if_cannot_start("image_emulator", exc, settings)
            raise
        handle = ImageEmulator(used.app, used.lease, IN_PROCESS_BASE_URL, in_process=True)
        try:
            yield handle
        finally:
            try:
                handle.close()
            finally:
                pool.give_back(used)


@pytest.fixture(scope="session")
def _image_emulator_server() -> Iterator[_LiveServer]:
    from ..config import Settings

    server = _LiveServer(Settings().replace(**DEFAULTS))
    yield server
    server.stop()


@pytest.fixture
def image_emulator_live(
    request: pytest.FixtureRequest, image_emulator_settings: Mapping[str, Any]
) -> Iterator[ImageEmulator]:
    """An emulator on a real loopback port (shared by the session, reset for each test)."""
    from ..config import FIXED_SETTINGS, Settings
    from .handle import ImageEmulator

    values = _settings_for(request.node, image_emulator_settings)
    fixed = {k: v for k, v in values.items() if k in FIXED_SETTINGS and DEFAULTS.get(k) != v}
    own: _LiveServer | None = None
    if fixed:  # settings that cannot change while serving get a server of their own
        own = _LiveServer(Settings().replace(**values))
        server = own
    else:
        server = request.getfixturevalue("_image_emulator_server")
    handle = ImageEmulator(server.app, server.loop, server.base_url, in_process=False)
    # The start-up state before the test, whatever the previous one left (like
    # pytest-httpserver's clear(): all settings, not just an undo of what this fixture set).
    changeable = {k: v for k, v in values.items() if k not in FIXED_SETTINGS}
    handle.restore(server.settings.replace(**changeable))
    yield handle
    handle.close()
    if own is not None:
        own.stop()
    else:
        handle.restore(server.settings)
