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
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

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


#: Where a setting came from, as a refusal names it.
_MARKER = "the image_emulator marker"
_FIXTURE = "the image_emulator_settings fixture"
#: Settings the fixtures choose themselves: refused wherever they are given.
_OWN = {
    "host": "image_emulator_live serves on 127.0.0.1",
    "port": "image_emulator_live serves on a free port",
}


def _refuse(message: str) -> NoReturn:
    """Fail the test's setup with ``message`` alone: a bad setting is the test's mistake,
    and the plugin's frames in a traceback would only hide it."""
    __tracebackhide__ = True
    pytest.fail(f"image_emulator: {message}", pytrace=False)


def _settings_for(node: _Marked, overrides: Mapping[str, Any]) -> dict[str, Any]:
    # The usual types first: an ABC's isinstance was half of this function's time.
    if not isinstance(overrides, dict | MappingProxyType) and not isinstance(overrides, Mapping):
        _refuse(
            f"{_FIXTURE} returned {type(overrides).__name__}; it must return a mapping of "
            "setting names to values, like {'envelope': 'bare'}"
        )
    values = {**DEFAULTS, **overrides}
    marker = node.get_closest_marker("image_emulator")
    if marker is not None:
        if marker.args:
            _refuse(f"{_MARKER} takes keyword settings only, got {marker.args!r}")
        values |= marker.kwargs
    if "host" in values or "port" in values:
        for name, where in _OWN.items():
            if name in values:
                source = _MARKER if marker is not None and name in marker.kwargs else _FIXTURE
                _refuse(
                    f"setting {name!r} (from {source}) is the fixtures' own: {where} (its "
                    "base_url says where), image_emulator on no port at all"
                )
    return values


def _settings(
    node: _Marked, overrides: Mapping[str, Any], values: dict[str, Any] | None = None
) -> Settings:
    """``Settings().replace(**values)`` of the test's settings (``values``, when the caller
    has them, else `_settings_for`'s), remembered where they can be a key: most tests of a
    session share theirs, and building and checking them is a share of a fixture's cost. A
    refusal fails the test's setup naming where the setting came from."""
    if values is None:
        values = _settings_for(node, overrides)
    try:
        try:
            return _cached_settings(_key(values))
        except TypeError:  # a dict among the values (a fault rule), or a name not a string
            from ..config import Settings

            return Settings().replace(**values)
    except ValueError as exc:  # ConfigError, imported only on this way out (~2.7 µs a test)
        from ..errors import ConfigError

        if not isinstance(exc, ConfigError):
            raise
        refused = exc
    _refuse(_refusal(node, overrides, refused))  # out of the except: no chained traceback


def _key(values: dict[str, Any]) -> tuple[tuple[str, type, Any], ...]:
    """``values`` as the cache's key: each with its type, through tuples and lists. 1 and True
    are equal and hash alike, and so are 1 and 1.0: by value alone, a refused
    ``always_list_results=1`` was accepted after a test had ``always_list_results=True``."""
    items = []
    for name, value in values.items():
        kind = type(value)
        items.append((name, kind, _payload(kind, value)))
    items.sort()  # by name: names differ, so a type is never compared
    return tuple(items)


def _payload(kind: type, value: Any) -> Any:
    """A tuple's or a list's items each as (type, payload); any other value as it is."""
    if kind is tuple or kind is list:
        return tuple((type(item), _payload(type(item), item)) for item in value)
    return value


def _untyped(kind: type, payload: Any) -> Any:
    if kind is tuple or kind is list:
        return kind(_untyped(*item) for item in payload)
    return payload


@functools.lru_cache(maxsize=64)
def _cached_settings(items: tuple[tuple[str, type, Any], ...]) -> Settings:
    from ..config import Settings

    return Settings().replace(**{name: _untyped(kind, value) for name, kind, value in items})


def _refusal(node: _Marked, overrides: Mapping[str, Any], exc: Exception) -> str:
    """What a refusal of the test's settings says, naming where they came from: the
    settings fixture's alone are built first, then the marker's on top of them."""
    from ..config import build_settings
    from ..errors import ConfigError

    marker = node.get_closest_marker("image_emulator")
    source = _FIXTURE
    try:
        base = build_settings(overrides={**DEFAULTS, **overrides}, overrides_source=source)
        if marker is not None:
            source = _MARKER
            build_settings(overrides=marker.kwargs, base=base, overrides_source=source)
    except ConfigError as own:
        # A range or a rule across settings is checked after the values: say whose it is.
        return own.message if "(from " in own.message else f"{own.message} (from {source})"
    return str(exc)  # pragma: no cover - the same values are refused both ways


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


class ImageEmulatorMarkWarning(pytest.PytestWarning):
    """An ``image_emulator`` marker that no fixture reads (the test uses neither fixture)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Warn of a test marked ``image_emulator`` that asks for neither fixture: its settings
    would be silently ignored. Only the test's own marker (a module's or a class's applies to
    every test in it, used or not), and not when ``request`` is among its fixtures (it may
    ask for one with ``request.getfixturevalue`` while it runs)."""
    for item in items:
        if not any(mark.name == "image_emulator" for mark in item.own_markers):
            continue
        names = getattr(item, "fixturenames", ())
        if not {"image_emulator", "image_emulator_live", "request"} & set(names):
            item.warn(
                ImageEmulatorMarkWarning(
                    f"{item.nodeid} is marked image_emulator but uses neither image_emulator "
                    "nor image_emulator_live: its settings apply to nothing"
                )
            )


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
        settings = _settings(self._item, image_emulator_settings)
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
    from ..config import FIXED_SETTINGS
    from .app_loop import Lease
    from .handle import ImageEmulator

    values = _settings_for(request.node, image_emulator_settings)
    settings = _settings(request.node, image_emulator_settings, values)
    fixed = {k: v for k, v in values.items() if k in FIXED_SETTINGS and DEFAULTS.get(k) != v}
    own: _LiveServer | None = None
    if fixed:  # settings that cannot change while serving get a server of their own
        own = _LiveServer(settings)
        server = own
    else:
        server = request.getfixturevalue("_image_emulator_server")
    # The test's own way onto the shared server, ended with the test: a handle kept from it
    # then fails as an in-process one does, instead of steering a later test's server.
    lease = Lease(server.loop)
    handle = ImageEmulator(server.app, lease, server.base_url, in_process=False)
    # The start-up state before the test, whatever the previous one left (like
    # pytest-httpserver's clear(): all settings, not just an undo of what this fixture set).
    # With no fixed setting of its own, the test's settings are the server's plus its
    # changeable ones.
    handle.restore(settings)
    yield handle
    try:
        handle.close()
        if own is None:
            handle.restore(server.settings)
    finally:
        lease.end()
        if own is not None:
            own.stop()
