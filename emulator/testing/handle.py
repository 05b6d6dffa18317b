"""`ImageEmulator`: a test's handle on one emulator (what the pytest fixtures yield).

Steering calls the control plane's operations (emulator/usecases/steer.py; the fault rules':
emulator/usecases/fault_rules.py) directly, never through HTTP, on the one loop its store
belongs to (emulator/testing/app_loop.py): the same calls, unchanged, in sync tests,
pytest-asyncio and anyio tests, and from threads of the code under test.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ..core.journal import query_from_filters
from ..stores.memory import MemoryStore
from ..usecases.configuration import settings_json
from ..usecases.steer import Steering
from .app_loop import Runner
from .assertions import check_times, near_misses
from .clients import NO_PARAMS, AsyncClient, Client, auth_headers, parsed, ssl_context
from .transport import ASGITransport, AsyncASGITransport

if TYPE_CHECKING:
    from ..usecases.emulator import Emulator
    from .intercept import Interception

T = TypeVar("T")
API_KEY = "sk-emulator-test"
_UNSET: Any = object()


@dataclass
class FaultHandle:
    """A fault rule added by a test; ``hits`` asks the emulator how often it fired."""

    id: str
    _emulator: ImageEmulator
    #: Which installation of rule ``id`` this handle is on (`FaultRule.serial`): another
    #: rule under the same id (replaced, or numbered again after a reset) is not its own.
    _serial: str = ""
    #: The rule's hits when this handle removed it (None: it did not).
    _removed_hits: int | None = None

    @property
    def hits(self) -> int:
        """How often the rule fired; after this handle's ``remove()``, how often it had. A
        `FaultGone` (a LookupError) when the rule went any other way (``faults.clear()``,
        ``reset()``, the control plane, replaced under its id): never 0 or another's count."""
        __tracebackhide__ = True
        if self._removed_hits is not None:
            return self._removed_hits
        reading = self._emulator.steering.fault_rules.fault_hits(self.id, self._serial)
        return self._emulator._run(reading)

    def remove(self) -> None:
        """Remove the rule, keeping its hits as they were (read in the same step)."""
        __tracebackhide__ = True
        removing = self._emulator.steering.fault_rules.remove_fault(self.id, self._serial)
        self._removed_hits = self._emulator._run(removing)


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
        (added,) = self._emulator._run(self._emulator.steering.fault_rules.add_faults([rule]))
        return FaultHandle(added.id, self._emulator, added.serial)

    def clear(self) -> None:
        self._emulator._run(self._emulator.steering.fault_rules.clear_faults())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._emulator._run(self._emulator.steering.fault_rules.faults()))


class ImageEmulator:
    """A handle on one emulator: where it is, and how to steer it.

    ``in_process``: clients reach the app through the in-process transports (the
    ``image_emulator`` fixture); otherwise through the network at ``base_url`` (the live one).
    """

    def __init__(self, app: Any, loop: Runner, base_url: str, *, in_process: bool) -> None:
        self.app = app
        self.emulator: Emulator = app.state.emulator
        #: The control plane's operations on it (what every steering call below runs).
        self.steering: Steering = self.emulator.steering
        self.base_url = base_url
        #: A key the test set on the handle (None: the settings' choice, `api_key`).
        self._api_key: str | None = None
        self.faults = Faults(self)
        self._loop = loop
        #: Steering an in-memory store never suspends: it runs without a trip on the loop
        #: when the loop would run in place (`AppLoop.run_inline`).
        self._inline = type(self.emulator.store) is MemoryStore
        self._in_process = in_process
        self._transport = ASGITransport(app, loop)
        self._async_transport = AsyncASGITransport(app, loop)
        self._interceptions: list[Interception] = []
        self._control: httpx.Client | None = None

    @property
    def api_key(self) -> str:
        """The key the fixture's clients send and ``set_balance`` gives credits to: one the
        test set on the handle; else the first of the ``api_keys`` setting in force (the
        emulator accepts only those); else ``sk-emulator-test`` (without ``api_keys`` any key
        is accepted)."""
        if self._api_key is not None:
            return self._api_key
        keys = self.emulator.settings.api_keys
        return keys[0] if keys else API_KEY

    @api_key.setter
    def api_key(self, key: str) -> None:
        self._api_key = key

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._inline:
            return self._loop.run_inline(coro)
        return self._loop.run(coro)

    # -- clients and transports ------------------------------------------------------------
    @property
    def transport(self) -> httpx.BaseTransport:
        """The in-process sync transport, for clients of your own:
        ``httpx.Client(base_url=image_emulator.base_url, transport=image_emulator.transport)``.
        Closing such a client leaves the emulator running."""
        return self._transport

    @property
    def async_transport(self) -> httpx.AsyncBaseTransport:
        """The in-process async transport, for ``httpx.AsyncClient(transport=...)``."""
        return self._async_transport

    def _client_options(self, auth: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        given = kwargs.pop("headers", _UNSET)
        headers: Any
        if auth and given is _UNSET:
            headers = auth_headers(self.api_key)
        else:
            headers = httpx.Headers(auth_headers(self.api_key) if auth else None)
            # httpx.Headers replaces names case-insensitively: a given "authorization" is the
            # one sent (a dict kept both, and the emulator reads the first: the fixture's).
            headers.update({} if given is _UNSET else given)
        if not self._in_process:
            kwargs.setdefault("verify", ssl_context())
        # The same empty query as the default, which httpx makes with urllib's parse_qs(None)
        # (~20k instructions; the client took ~122k): an empty QueryParams is copied instead.
        kwargs.setdefault("params", NO_PARAMS)
        return {"base_url": parsed(self.base_url), "headers": headers, **kwargs}

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync httpx client pointed at the emulator, sending `api_key` (as it is when the
        client is made) unless ``headers`` give an Authorization of their own."""
        transport = self._transport if self._in_process else None
        ours = "base_url" not in kwargs
        client = Client(transport=transport, **self._client_options(True, kwargs))
        if ours:
            client._remember_urls(self.base_url)
        return client

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An async httpx client like `client`."""
        transport = self._async_transport if self._in_process else None
        ours = "base_url" not in kwargs
        client = AsyncClient(transport=transport, **self._client_options(True, kwargs))
        if ours:
            client._remember_urls(self.base_url)
        return client

    def intercept(self, *origins: str) -> Interception:
        """Route every httpx request for these origins (``"https://relay.example"``), from any
        client on httpx's default transports, to this emulator; other hosts go where they
        went. Undone at the end of the test, or earlier by ``.stop()`` or a ``with`` block."""
        from .intercept import Interception  # here: most tests never intercept

        interception = Interception(origins, self._transport, self._async_transport)
        self._interceptions.append(interception)
        return interception

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request to the HTTP control plane (``/_emulator/...``): its JSON, or
        AssertionError on an error status. The steering calls below need none of it."""
        if self._control is None:
            transport = self._transport if self._in_process else None
            self._control = Client(transport=transport, **self._client_options(False, {}))
        response = self._control.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    # -- steering ----------------------------------------------------------------------------
    def respond(
        self,
        status: int,
        json: Any = None,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        probability: float = 1.0,
        times: int | None = None,
        id: str | None = None,
        **match: Any,
    ) -> FaultHandle:
        """Answer matching requests with ``status``, a JSON value or a text ``body`` and
        ``headers`` (a fault rule of kind ``respond``, matched like any: ``endpoint``,
        ``model``, ``api_key``, ...); the rule's handle."""
        effect = {"kind": "respond", "status": status, "json": json, "body": body}
        effect["headers"] = None if headers is None else dict(headers)
        given = {name: value for name, value in effect.items() if value is not None}
        return self.faults.add(given, probability=probability, times=times, id=id, **match)

    def advance(self, seconds: float) -> float:
        """Move the manual clock forward; returns the new virtual time."""
        return self._run(self.steering.advance(seconds))

    def finish(self, task_id: str) -> dict[str, Any]:
        """End a task now, succeeded."""
        return self._run(self.steering.end_task(task_id, "succeeded", self.base_url))

    def fail(
        self, task_id: str, code: str = "upstream_error", message: str | None = None
    ) -> dict[str, Any]:
        """End a task now, failed with ``code``."""
        return self._run(self.steering.end_task(task_id, "failed", self.base_url, code, message))

    def run_until_settled(self, max_steps: int = 1000) -> list[dict[str, Any]]:
        """Advance the clock until every task has ended; the tasks' final views."""
        return self._run(self.steering.run_until_settled(self.base_url, max_steps))

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every task, with its schedule and current status."""
        return self._run(self.steering.tasks(self.base_url))

    def requests(
        self, *, body: Mapping[str, Any] | None = None, partial: bool = False, **filters: Any
    ) -> list[dict[str, Any]]:
        """The journal, newest last: entries matching every filter (``path``, ``method``,
        ``task_id``, ``endpoint``, ``status``, ``fault``) and every ``body`` field (typed
        against a JSON body: 2 is not "2"; text against a form's). Every one the journal
        keeps, read a page at a time; CursorGone (a LookupError) if a reset restarts the
        journal's numbering between two pages, never part of it. JournalIncomplete (naming
        ``journal_limit``) if the journal dropped entries since its last reset or clear, or
        keeps none: never a list that silently misses some; ``partial=True``: what it keeps.

        Any other filter is a ValueError naming the known ones: body fields are filtered
        explicitly, ``body={"model": "X"}``, never by a bare ``model="X"``.
        """
        __tracebackhide__ = True
        query = query_from_filters(filters, body)  # before the store: a bad filter never reads
        return self._run(self.steering.journal(query, whole=not partial))

    def assert_requested(
        self, times: int | None = None, *, body: Mapping[str, Any] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """Assert the client sent matching requests (``times`` exactly, or at least one); the
        failure lists the journal's closest entries. JournalIncomplete (not an assertion)
        when the journal cannot tell (`requests`)."""
        __tracebackhide__ = True
        times = check_times(times)
        query = query_from_filters(filters, body)
        entries = self._run(self.steering.journal(query, whole=True))
        described = filters | ({"body": body} if body is not None else {})
        if times is None and entries:
            return entries
        if times is not None and len(entries) == times:
            return entries
        failure = (
            f"no request matched {described}"
            if times is None
            else f"{len(entries)} requests matched {described}, expected {times}"
        )
        endpoint = filters.get("endpoint")
        where = f"of endpoint {endpoint}" if isinstance(endpoint, str) else "of any endpoint"
        near = query_from_filters({"endpoint": endpoint} if isinstance(endpoint, str) else {})
        newest = self._run(self.steering.journal_newest(near, 1_000))
        raise AssertionError(failure + near_misses(query, newest, where))

    def sent(
        self, *, body: Mapping[str, Any] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """The body fields of the submissions the client sent (newest last); as `requests`,
        JournalIncomplete when the journal cannot tell."""
        __tracebackhide__ = True
        filters.setdefault("endpoint", "submit")
        return [e["body"]["fields"] for e in self.requests(body=body, **filters) if e.get("body")]

    @property
    def usage(self) -> dict[str, Any]:
        """The usage log: every entry (held/settled/released), in hold order, and totals per
        key and model as of the last page's read. Read page by page; a `CursorGone` error
        (never a partial list) if the store's numbering started again meanwhile (another
        worker wiped a shared Redis)."""
        return self._run(self.steering.billing.usage_log({}))

    def set_balance(self, amount: int | None, key: str | None = None) -> None:
        """Give ``key`` (default: the fixture's) a balance in credits; None: unlimited."""
        self._run(self.steering.set_balance(key or self.api_key, amount))

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings that may change while serving; the settings now in force."""
        remedy = "give it to @pytest.mark.image_emulator({name}=...) instead"
        # The seed in use, as GET /_emulator/config shows it (drawn at start when unset).
        return settings_json(
            self._run(self.steering.configure(settings, remedy)), self.emulator.seed
        )

    def reset(self) -> None:
        """Forget tasks, journal, added faults, balances and usage; the clock back to 0.
        Settings stay as they are."""
        self._run(self.steering.reset())

    def restore(self, settings: Any) -> None:
        """Put ``settings`` (a `Settings`) in force and reset: a fresh start."""
        self._run(self.steering.restore(settings))
        self.reset()

    def close(self) -> None:
        """Stop intercepting and close clients made here; the fixture closes the loop."""
        for interception in reversed(self._interceptions):
            interception.stop()
        self._interceptions.clear()
        if self._control is not None:
            self._control.close()
