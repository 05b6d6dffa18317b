"""The promises of docs/invariants.md: examples first, then a state machine that checks them
all after every step, on the memory, SQLite and Redis stores.

The machine drives emulators only through their real request path (httpx with the app, over
the emulator's in-process transport, one per worker): submissions, polls (by the owner and by
other keys), clock advances, run-time settings, forced outcomes, fault rules, balances, expiry
and the task cap (small limits, and a sweep every few submissions), and restarts of a worker on
the kept store. SQLite and Redis run two workers on one store. After every step it reads the
control plane (usage, balances, tasks, journal) and checks every invariant against what it has
seen so far.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from emulator import Settings, create_app
from emulator.core.billing import PriceTable
from emulator.core.keys import mask_key
from emulator.core.tasks import Task, has_ended, images_returned
from emulator.testing.transport import ASGITransport
from emulator.usecases import sweep as expiry

from .conftest import MakeClient
from .redis_server import RedisServer, running_redis

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}


def test_a_settings_change_never_unfinishes_or_rewinds_a_task_on_the_per_poll_clock(
    make_client: MakeClient,
) -> None:
    client = make_client(clock="per_poll", per_poll_steps=3)
    done, running = client.submit_ok(NANO), client.submit_ok(NANO)
    seen = [client.task(done) for _ in range(3)]
    assert (seen[-1]["status"], seen[-1]["progress"]) == ("succeeded", "100%")
    assert client.task(running)["progress"] == "33%"
    patched = client.patch("/_emulator/config", json={"per_poll_steps": 50})
    assert patched.status_code == 200
    after = client.task(done)
    assert (after["status"], after["progress"]) == ("succeeded", "100%")
    # A task keeps the steps it was submitted with; new tasks take the new setting.
    assert client.task(running)["progress"] == "66%"
    fresh = client.submit_ok(NANO)
    # One of its 50 steps: 2 % (33 % with the old 3 steps).
    assert client.task(fresh)["progress"] == "2%"


# -- the state machine --------------------------------------------------------------------------
KEYS = ("sk-alpha-001", "sk-bravo-002", "sk-charlie-003")  # masks differ: sk-a…001, ...
MODELS = ("NanoBanana2-0.5K", "NanoBanana")
PRICES = PriceTable.load()
ORDER = {"queued": 0, "processing": 1, "succeeded": 2, "failed": 2}
TERMINAL = ("succeeded", "failed")


@dataclass
class Seen:
    """What the machine knows of one accepted task."""

    key: str
    cost: int
    #: Whether its key had a balance when it was submitted (then its hold took ``cost``).
    taken: int
    status: str = "queued"
    progress: int = 0
    #: Polls by its owner that the emulator answered (each counts once on per_poll).
    polls: int = 0
    removed: bool = False
    #: ``ttl_changes`` when it left the listing (an expired task not yet swept shows again
    #: if the TTL is raised: docs/invariants.md).
    gone_at: int = 0
    images: int | None = None
    charge: dict[str, Any] | None = None
    #: The task as the control plane last showed it (schedule, created_at, ...).
    stored: dict[str, Any] | None = None


@dataclass
class Model:
    tasks: dict[str, Seen] = field(default_factory=dict)
    #: Credits granted per key: the net of every balance set (a removal takes back what was
    #: left). Conservation: balance = granted - taken + refunded.
    granted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KEYS, 0))
    balances: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(KEYS))
    #: Refunds seen on finished entries, and what charges took that finished and left the
    #: bounded log before the machine saw them finished.
    refunded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KEYS, 0))
    unseen_taken: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KEYS, 0))
    unseen_refunded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KEYS, 0))
    journaled: int = 0


class EmulatorMachine(RuleBasedStateMachine):
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

    def _client(self, worker: int) -> httpx.Client:
        return self.clients[worker % self.workers]

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

    # -- the invariants, after every step -----------------------------------------------------
    def _listing(self, worker: int = 0) -> list[dict[str, Any]]:
        response = self._client(worker).get("/_emulator/tasks")
        assert response.status_code == 200, response.text
        views: list[dict[str, Any]] = response.json()["tasks"]
        return views

    def _saw(self, seen: Seen, status: str, progress: int) -> None:
        """An observation of a task: never backwards, terminal states final."""
        assert ORDER[status] >= ORDER[seen.status], (seen.status, status)
        assert progress >= seen.progress, (seen.progress, progress)
        if seen.status in TERMINAL:
            assert status == seen.status, "a finished task changed its outcome"
        seen.status, seen.progress = status, progress

    @invariant()
    def state_and_money_hold(self) -> None:
        if not self.clients or self.clients[0] is None:
            return
        client = self.clients[0]
        usage = client.get("/_emulator/usage").json()  # settles whatever has ended
        balances = {
            b["key"]: b["balance"] for b in client.get("/_emulator/balances").json()["balances"]
        }
        listed = {view["task"]["task_id"]: view for view in self._listing()}
        self._check_tasks(listed)
        self._check_charges(usage, listed)
        self._check_money(usage, balances)
        self._check_journal()

    def _check_tasks(self, listed: dict[str, dict[str, Any]]) -> None:
        assert set(listed) <= set(self.model.tasks), "a task nobody submitted"
        now = self.clock_now
        for task_id, seen in self.model.tasks.items():
            view = listed.get(task_id)
            if view is None:
                if not seen.removed:
                    self._gone(task_id, seen, now)
                continue
            if seen.removed:
                # Expired but not yet swept, and the TTL raised since: shown again, unchanged.
                assert seen.status in TERMINAL and seen.gone_at != self.ttl_changes, task_id
                seen.removed = False
            seen.stored = view["task"]
            self._saw(seen, view["status"], int(view["progress"].rstrip("%")))
            if view["status"] in TERMINAL:
                seen.images = images_returned(Task.from_dict(view["task"]))
            # Every owner's poll counted exactly once; no other key's poll moved it.
            if self.clock == "per_poll":
                assert view["task"]["polls"] == seen.polls, (view["task"]["polls"], seen.polls)

    def _gone(self, task_id: str, seen: Seen, now: float) -> None:
        """``task_id`` left the listing (expired or evicted): only a finished task may go, and
        it never comes back."""
        seen.removed, seen.gone_at = True, self.ttl_changes
        if seen.status in TERMINAL:
            return
        # It ended, and expired, since the last look: by its schedule and this clock, or by
        # the owner's polls (counted by the machine) on the per_poll clock.
        assert seen.stored is not None, f"{task_id} went before it was ever listed"
        task = Task.from_dict(seen.stored | {"polls": seen.polls})
        assert has_ended(task, now), f"unfinished {task_id} removed"
        seen.status, seen.progress = task.schedule.outcome, 100
        seen.images = images_returned(task)

    def _check_charges(self, usage: dict[str, Any], listed: dict[str, dict[str, Any]]) -> None:
        entries = {e["task_id"]: e for e in usage["entries"]}
        assert len(entries) == len(usage["entries"]), "a task charged twice"
        assert set(entries) <= set(self.model.tasks), "a charge without a task"
        for task_id, seen in self.model.tasks.items():
            entry = entries.get(task_id)
            if seen.charge is not None and seen.charge["state"] != "held":
                # Settled exactly once: a finished charge never changes (it may leave the log).
                assert entry is None or entry == seen.charge, (seen.charge, entry)
                continue
            if entry is None:
                # Held when last seen (or never seen), gone now: it finished and left the
                # bounded log at once (it still counts in the totals: checked below).
                assert seen.status in TERMINAL or seen.removed, f"held charge of {task_id} gone"
                self.model.unseen_taken[seen.key] += seen.taken
                seen.charge = {"state": "left the log"}
                continue
            assert (entry["held"], entry["taken"]) == (seen.cost, seen.taken), entry
            if entry["state"] == "held":
                # Held exactly while the task runs: nothing unfinished is settled.
                assert seen.status not in TERMINAL and not seen.removed, (entry, seen)
            else:
                assert seen.status in TERMINAL or seen.removed, (entry, seen)
                if seen.images is not None:
                    assert entry["images"] == seen.images, (entry, seen)
                amount = entry["unit_price"] * entry["images"]
                assert entry["amount"] == amount <= entry["held"], entry
                assert entry["state"] == ("settled" if entry["images"] else "released"), entry
                # What goes back: the unpaid part of what was taken, if the key has a balance.
                back = entry["taken"] - min(entry["taken"], amount)
                balance = self.model.balances[seen.key]
                assert entry["refunded"] == (0 if balance is None else back), entry
                self.model.refunded[seen.key] += entry["refunded"]
                if balance is not None:
                    self.model.balances[seen.key] = balance + back
            seen.charge = entry

    def _check_money(self, usage: dict[str, Any], balances: dict[str, int]) -> None:
        by_key = usage["totals"]["by_key"]
        for key in KEYS:
            label = mask_key(key)
            row = by_key.get(label, {"taken": 0, "refunded": 0, "tasks": 0})
            # Refunds of charges that left the log unseen: never more than they took, and only
            # to a balance (none changed while they ended: balance changes settle first).
            unseen = row["refunded"] - self.model.refunded[key]
            assert 0 <= unseen <= self.model.unseen_taken[key], (key, row, unseen)
            new = unseen - self.model.unseen_refunded[key]
            self.model.unseen_refunded[key] = unseen
            expected = self.model.balances[key]
            assert new >= 0 and (expected is not None or new == 0), (key, row, new)
            expected = None if expected is None else expected + new
            balance = balances.get(label)
            assert balance == expected, (key, balance, expected)
            self.model.balances[key] = balance
            assert balance is None or balance >= 0
            # Conservation: every credit granted is still available, held or paid.
            granted = self.model.granted[key]
            assert (balance or 0) == granted - row["taken"] + row["refunded"], (key, row)
            # Every accepted task is counted, however short the log.
            accepted = sum(1 for seen in self.model.tasks.values() if seen.key == key)
            assert row["tasks"] == accepted, (key, row, accepted)

    def _check_journal(self) -> None:
        # Each worker first writes out what it has queued (Redis writes behind).
        counts = [len(c.get("/_emulator/requests").json()["requests"]) for c in self.clients]
        assert counts[-1] == self.model.journaled, (counts, self.model.journaled)


CONFIGURATIONS = {
    # (store, clock): examples, steps. A Redis step costs about five memory steps and a SQLite
    # one two (measured): about 50 s in all on this 2-core machine, half that under -n 2.
    ("memory", "manual"): (100, 30),
    ("memory", "per_poll"): (60, 30),
    ("sqlite", "manual"): (30, 30),
    ("sqlite", "per_poll"): (20, 30),
    ("redis", "manual"): (15, 30),
    ("redis", "per_poll"): (10, 30),
}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.mark.parametrize(("store", "clock"), list(CONFIGURATIONS))
def test_the_invariants_hold_under_random_requests(
    store: str, clock: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples, steps = CONFIGURATIONS[store, clock]
    server = request.getfixturevalue("redis_server") if store == "redis" else None
    monkeypatch.setattr(expiry, "SWEEP_EVERY", 3)  # sweep often enough to see expiry
    machine = type(
        f"{store.title()}{clock.title().replace('_', '')}Machine",
        (EmulatorMachine,),
        {
            "store": store,
            "clock": clock,
            "workers": 1 if store == "memory" else 2,
            "redis": server,
        },
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            derandomize=True,  # the same examples every run: CI never flakes
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
