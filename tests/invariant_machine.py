"""A Hypothesis state machine that drives emulators only through their real request path (httpx
with the app, over the emulator's in-process transport, one per worker): submissions, polls (by
the owner and by other keys), clock advances, run-time settings, forced outcomes, fault rules,
balances, expiry and the task cap, and restarts of a worker on the kept store. Its invariants,
checked after every step, are tests/invariant_model.py's; tests/test_invariants.py runs it on
each store and clock."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from typing import Any, ClassVar

import httpx
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    precondition,
    rule,
)

from emulator import Settings, create_app
from emulator.testing.transport import ASGITransport

from .invariant_model import KEYS, MODELS, PRICES, TERMINAL, InvariantChecks, Model, Seen
from .redis_server import RedisServer


class EmulatorMachine(InvariantChecks, RuleBasedStateMachine):
    """One emulator (``workers`` apps on one store) under random requests."""

    store: ClassVar[str] = "memory"
    clock: ClassVar[str] = "manual"
    workers: ClassVar[int] = 1
    redis: ClassVar[RedisServer | None] = None
    _examples = itertools.count()

    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.clients: list[httpx.Client] = []
        self.caps: list[int] = []
        self.folder: str | None = None
        #: Changes of the TTL the listing is judged by (a setting or a restart).
        self.ttl_changes = 0
        #: The manual clock (kept by the store, across restarts).
        self.clock_now = 0.0
        #: Rules Hypothesis finds cheap to draw would crowd out the rest: a budget each.
        self.budget = {"add_fault": 4, "change_settings": 4}

    # -- set-up and plumbing -----------------------------------------------------------------
    def _settings(self) -> Settings:
        store = self.store
        if store == "sqlite":
            store = f"sqlite://{self.folder}/emulator.db"
        elif store == "redis":
            assert self.redis is not None
            store = self.redis.url
        return Settings(
            seed=7,
            clock=self.clock,  # type: ignore[arg-type]
            store=store,
            store_prefix=self.prefix,
            per_poll_steps=3,
            failure_rate=0.5,  # failed tasks release holds: refunds happen often
            max_tasks=8,
            # On per_poll the TTL is wall-clock time, which the machine cannot move: kept
            # forever there (tests/test_expiry.py covers it); the cap still evicts.
            task_ttl_seconds=60.0 if self.clock == "manual" else 0.0,
            usage_log_limit=6,
            journal_limit=100_000,
            # A loaded machine must not turn a step into a 503 (which the machine would report
            # as a broken invariant): stalls and their 503s are tests/test_atomicity.py's.
            redis_timeout=30.0,
        )

    def _start(self, worker: int) -> None:
        app = create_app(self._settings())
        client = httpx.Client(transport=ASGITransport(app), base_url="http://emulator")
        client.app = app  # type: ignore[attr-defined]
        self.clients[worker] = client
        self.caps[worker] = 8

    @initialize()
    def start(self) -> None:
        self.prefix = f"machine-{next(self._examples)}-{time.monotonic_ns()}"
        if self.store == "sqlite":
            self.folder = tempfile.mkdtemp(prefix="emulator-machine-")
        self.clients = [None] * self.workers  # type: ignore[list-item]
        self.caps = [8] * self.workers
        for worker in range(self.workers):
            self._start(worker)
        self.set_balance(0, KEYS[1], 300)  # one key starts with a balance, the others not

    def teardown(self) -> None:
        if self.clients and self.clients[0] is not None and self.store == "redis":
            self.clients[0].post("/_emulator/reset")
        for client in self.clients:
            if client is not None:
                self._stop(client)
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def _stop(client: httpx.Client) -> None:
        """Close the worker's store (on its transport's loop), then the transport."""
        transport = client._transport
        assert isinstance(transport, ASGITransport)
        transport.loop.run(client.app.state.emulator.store.close())  # type: ignore[attr-defined]
        client.close()

    @staticmethod
    def _auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    # -- rules ---------------------------------------------------------------------------------
    @rule(
        target=tasks,
        worker=st.integers(0, 1),
        key=st.sampled_from(KEYS),
        model=st.sampled_from(MODELS),
        n=st.integers(1, 3),
    )
    def submit(self, worker: int, key: str, model: str, n: int) -> Any:
        cost = PRICES.unit_price(model, None, None) * n
        response = self._client(worker).post(
            "/v1/images/tasks",
            json={"model": model, "prompt": "a lighthouse", "n": n},
            headers=self._auth(key),
        )
        self.model.journaled += 1
        balance = self.model.balances[key]
        cap = self.caps[worker % self.workers]
        if response.status_code == 200:
            task_id = response.json()["data"]["task_id"]
            assert task_id not in self.model.tasks
            assert balance is None or balance >= cost, "accepted what the balance cannot cover"
            seen = self.model.tasks[task_id] = Seen(key, cost, 0 if balance is None else cost)
            view = self._client(worker).get(f"/_emulator/tasks/{task_id}")
            assert view.status_code == 200, view.text
            seen.stored = view.json()["task"]
            if balance is not None:
                self.model.balances[key] = balance - cost
            if cap:  # the cap holds right after a submission it accepted
                assert len(self._listing(worker)) <= cap
            return task_id
        if response.status_code == 403:
            assert balance is not None and balance < cost, response.text
        elif response.status_code == 429:
            # Full, and nothing it holds has ended: nothing could make room.
            listed = self._listing(worker)
            assert cap and len(listed) >= cap, response.text
            assert all(view["status"] not in TERMINAL for view in listed), response.text
        else:
            assert response.status_code == 503, response.text  # an injected fault
            assert "injected" in response.text
        return multiple()

    @rule(task=tasks, worker=st.integers(0, 1))
    def poll(self, task: str, worker: int) -> None:
        seen = self.model.tasks[task]
        response = self._client(worker).get(
            f"/v1/images/tasks/{task}", headers=self._auth(seen.key)
        )
        self.model.journaled += 1
        if response.status_code == 404:
            # Only a task that had ended can have expired.
            assert seen.removed or seen.status in TERMINAL, response.text
            return
        assert response.status_code == 200, response.text
        seen.polls += 1
        body = response.json()["data"]
        self._saw(seen, body["status"], int(body["progress"].rstrip("%")))

    @rule(task=tasks, worker=st.integers(0, 1), other=st.integers(1, 2))
    def poll_as_another_key(self, task: str, worker: int, other: int) -> None:
        seen = self.model.tasks[task]
        key = KEYS[(KEYS.index(seen.key) + other) % len(KEYS)]
        response = self._client(worker).get(f"/v1/images/tasks/{task}", headers=self._auth(key))
        self.model.journaled += 1
        assert response.status_code == 404, "another key saw the task"
        assert "expired" not in response.text  # nothing tells another key it existed

    @precondition(lambda self: self.clock == "manual")
    @rule(worker=st.integers(0, 1), seconds=st.sampled_from([1.0, 4.0, 9.0, 30.0, 400.0]))
    def advance(self, worker: int, seconds: float) -> None:
        response = self._client(worker).post("/_emulator/clock/advance", json={"seconds": seconds})
        assert response.status_code == 200, response.text
        self.clock_now += seconds
        assert response.json()["now"] == self.clock_now

    @precondition(lambda self: self.budget["change_settings"] > 0)
    @rule(
        worker=st.integers(0, 1),
        changes=st.fixed_dictionaries(
            {},
            optional={
                "per_poll_steps": st.integers(1, 6),
                "time_scale": st.sampled_from([0.0, 0.5, 1.0, 3.0]),
                "failure_rate": st.sampled_from([0.0, 0.5, 1.0]),
                "max_tasks": st.sampled_from([0, 3, 8, 20]),
                "usage_log_limit": st.sampled_from([0, 2, 6, 1000]),
                "task_ttl_seconds": st.sampled_from([0.0, 20.0, 60.0]),
            },
        ),
    )
    def change_settings(self, worker: int, changes: dict[str, Any]) -> None:
        self.budget["change_settings"] -= 1
        if self.clock == "per_poll":
            changes.pop("task_ttl_seconds", None)  # wall-clock seconds: see _settings
        response = self._client(worker).patch("/_emulator/config", json=changes)
        assert response.status_code == 200, response.text
        if "max_tasks" in changes:
            self.caps[worker % self.workers] = changes["max_tasks"]
        self.ttl_changes += "task_ttl_seconds" in changes

    @rule(task=tasks, worker=st.integers(0, 1), outcome=st.sampled_from(TERMINAL))
    def force_outcome(self, task: str, worker: int, outcome: str) -> None:
        seen = self.model.tasks[task]
        response = self._client(worker).post(
            f"/_emulator/tasks/{task}/outcome", json={"status": outcome}
        )
        if seen.removed or response.status_code == 404:
            assert seen.removed or seen.status in TERMINAL, response.text
            seen.removed = True
            return
        if seen.status in TERMINAL:
            assert response.status_code == 409, response.text  # terminal states are final
            return
        assert response.status_code == 200, response.text
        assert response.json()["status"] == outcome

    @precondition(lambda self: self.budget["add_fault"] > 0)
    @rule(
        worker=st.integers(0, 1),
        effect=st.sampled_from(
            [
                {"kind": "fail_task", "code": "content_policy_violation"},
                {"kind": "partial", "images": 1},
                {"kind": "http_error", "status": 503},
            ]
        ),
    )
    def add_fault(self, worker: int, effect: dict[str, Any]) -> None:
        self.budget["add_fault"] -= 1
        rule = {"effect": effect, "match": {"endpoint": "submit"}, "times": 1}
        response = self._client(worker).post("/_emulator/faults", json=rule)
        assert response.status_code == 201, response.text

    @rule(
        worker=st.integers(0, 1),
        key=st.sampled_from(KEYS),
        amount=st.sampled_from([None, 0, 40, 100, 500]),
    )
    def set_balance(self, worker: int, key: str, amount: int | None) -> None:
        response = self._client(worker).put(f"/_emulator/balances/{key}", json={"balance": amount})
        assert response.status_code == 200, response.text
        before = self.model.balances[key] or 0
        self.model.granted[key] += (amount or 0) - before
        self.model.balances[key] = amount

    @rule(task=tasks, worker=st.integers(0, 1), amount=st.sampled_from([None, 0, 100, 500]))
    def set_the_balance_of_a_tasks_key(self, task: str, worker: int, amount: int | None) -> None:
        """A balance set or removed while the key's task may still hold credits."""
        self.set_balance(worker, self.model.tasks[task].key, amount)

    @precondition(lambda self: self.store != "memory")
    @rule(worker=st.integers(0, 1))
    def restart(self, worker: int) -> None:
        """Stop one worker and start it again on the kept store (its settings as at start)."""
        self._stop(self.clients[worker % self.workers])
        self._start(worker % self.workers)
        self.ttl_changes += 1  # back to the TTL it started with
