"""What the invariant state machine (tests/invariant_machine.py) knows of the emulator it
drives, and the invariants of docs/invariants.md it checks after every step against what it has
seen: tasks never go backwards nor vanish unfinished, each charge settles once and as priced,
money is conserved per key, every request is journaled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from hypothesis.stateful import invariant

from emulator.core.billing import PriceTable
from emulator.core.keys import mask_key
from emulator.core.tasks import Task, has_ended, images_returned

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


class InvariantChecks:
    """The invariants, read from the control plane after every step. Mixed into
    ``EmulatorMachine``, which sets what is declared here as it drives the emulator."""

    clock: ClassVar[str]
    workers: ClassVar[int]
    model: Model
    clients: list[httpx.Client]
    #: Changes of the TTL the listing is judged by (a setting or a restart).
    ttl_changes: int
    #: The manual clock (kept by the store, across restarts).
    clock_now: float

    def _client(self, worker: int) -> httpx.Client:
        return self.clients[worker % self.workers]

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
