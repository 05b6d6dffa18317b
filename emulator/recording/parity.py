"""``parity DIR --against URL``: the recorded requests sent to another service (usually the
emulator), its answers diffed with the recorded ones (`snapshot`).

Requests go out in recorded order with the caller's key (``--api-key``; the cassette has none).
A submission's answer is compared at once; a task it creates is then known by its new id.
Polls are compared by state, not by position, because the two services need not take the same
time: the first answer of each running state (``queued``, ``processing``) on both sides, and the
final answer, after polling the target until the task ends (``--deadline``). Other answers
(refusals, unknown tasks) are compared one to one. Submissions are never sent to a service off
this machine unless ``--allow-generation`` says they may be (they may be billed).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..conformance.checks import unwrap
from .cassette import Cassette
from .evidence import TERMINAL, Sent, gather
from .snapshot import diff, normalize

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2
LOOPBACK_NAMES = ("localhost",)
#: The key sent to a service on this machine when none is given (an emulator takes any).
LOCAL_KEY = "sk-parity"


@dataclass(frozen=True, slots=True)
class ParityOptions:
    against: str
    api_key: str | None = None
    allow_generation: bool = False
    poll_interval: float = 0.5
    deadline: float = 120.0
    ignore: tuple[str, ...] = ()
    timeout: float = 30.0


@dataclass(slots=True)
class Got:
    """One answer: status, media type, JSON body (None: not JSON) and raw body."""

    status: int
    media_type: str
    data: Any
    raw: bytes


@dataclass(slots=True)
class Pair:
    """A task on both sides: the recorded answers and the target's."""

    recorded_id: str
    target_id: str
    line: int
    recorded: list[Got] = field(default_factory=list)
    target: list[Got] = field(default_factory=list)


def local(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _got_recorded(sent: Sent) -> Got:
    media = sent.exchange.content_type.split(";")[0].strip().lower()
    return Got(sent.status or 0, media, sent.data, sent.response_body or b"")


def _got(response: httpx.Response) -> Got:
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        data = response.json()
    except ValueError:
        data = None
    return Got(response.status_code, media, data, response.content)


def _task(got: Got) -> dict[str, Any] | None:
    unwrapped = unwrap(got.data) if 200 <= got.status < 300 else None
    return None if unwrapped is None else unwrapped[1]


class Parity:
    def __init__(
        self,
        cassette: Cassette,
        options: ParityOptions,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cassette, self.options, self.sleep, self.clock = cassette, options, sleep, clock
        self.key = options.api_key or (LOCAL_KEY if local(options.against) else None)
        self.http = httpx.Client(
            base_url=options.against.rstrip("/"),
            transport=transport,
            timeout=options.timeout,
            follow_redirects=False,
            trust_env=False,
        )
        self.differences: list[str] = []
        self.notes: list[str] = []
        self.compared = 0
        self.sent = 0

    def close(self) -> None:
        self.http.close()

    def _send(self, sent: Sent, path: str) -> Got | None:
        ex = sent.exchange
        headers = {}
        if ex.keyed and self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        if ex.request_content_type:
            headers["Content-Type"] = ex.request_content_type
        try:
            response = self.http.request(
                ex.method, path, headers=headers, content=sent.request_body
            )
        except httpx.HTTPError as exc:
            if self.sent == 0:
                raise
            self.differences.append(f"line {ex.line}: the target gave no answer ({exc})")
            return None
        self.sent += 1
        return _got(response)

    def _compare(
        self, label: str, recorded: Got, target: Got, ids: frozenset[str], *, running: bool = False
    ) -> None:
        self.compared += 1
        lines = []
        if recorded.status != target.status:
            lines.append(f"status: the recording has {recorded.status}, the target {target.status}")
        if recorded.media_type != target.media_type:
            lines.append(
                f"content-type: the recording has {recorded.media_type!r}, the target "
                f"{target.media_type!r}"
            )
        if recorded.data is not None or target.data is not None:
            lines += diff(
                normalize(recorded.data, ids, running=running),
                normalize(target.data, ids, running=running),
                self.options.ignore,
            )
        elif recorded.raw != target.raw:
            lines.append("body: the bytes differ (not JSON)")
        self.differences += [f"{label}: {line}" for line in lines]

    def run(self) -> None:
        evidence = gather(self.cassette)
        pairs: dict[str, Pair] = {}
        for item in evidence.sent:
            ex = item.exchange
            if ex.status is None:
                self.notes.append(f"line {ex.line}: recorded without an answer; not sent")
                continue
            if ex.kind == "poll" and ex.task_id in evidence.tasks:
                followed = evidence.tasks[ex.task_id]
                if ex.keyed and any(f is item for f in followed.foreign):
                    self.notes.append(f"line {ex.line}: a poll with a second key; not sent")
                    continue
            path = ex.path
            pair = pairs.get(ex.task_id or "") if ex.kind == "poll" else None
            if pair is not None:
                path = ex.path.replace(pair.recorded_id, pair.target_id)
            got = self._send(item, path + (f"?{ex.query}" if ex.query else ""))
            if got is None:
                continue
            recorded = _got_recorded(item)
            if pair is not None and _task(recorded) is not None and _task(got) is not None:
                pair.recorded.append(recorded)
                pair.target.append(got)
                continue
            ids = frozenset(i for i in (ex.task_id, pair.target_id if pair else None) if i)
            label = f"line {ex.line} ({ex.method} {ex.path})"
            if ex.kind == "submit":
                target_task = _task(got)
                ids = frozenset(
                    str(i) for i in (ex.task_id, (target_task or {}).get("task_id")) if i
                )
                self._compare(label, recorded, got, ids)
                if ex.task_id and target_task is not None and _task(recorded) is not None:
                    pairs[ex.task_id] = Pair(ex.task_id, str(target_task.get("task_id")), ex.line)
            else:
                self._compare(label, recorded, got, ids)
        for pair in pairs.values():
            self._finish(pair)

    def _finish(self, pair: Pair) -> None:
        """Poll the target's task until it ends, then compare the two by state."""
        started = self.clock()
        while not pair.target or (_task(pair.target[-1]) or {}).get("status") not in TERMINAL:
            if self.clock() - started > self.options.deadline:
                break
            if pair.target:
                self.sleep(self.options.poll_interval)
            headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
            try:
                response = self.http.get(f"/v1/images/tasks/{pair.target_id}", headers=headers)
            except httpx.HTTPError as exc:
                self.differences.append(
                    f"task {pair.recorded_id}: the target gave no answer ({exc})"
                )
                return
            got = _got(response)
            if _task(got) is None:
                self._compare(
                    f"task {pair.recorded_id}",
                    pair.recorded[-1],
                    got,
                    frozenset({pair.recorded_id, pair.target_id}),
                )
                return
            pair.target.append(got)
        ids = frozenset({pair.recorded_id, pair.target_id})
        label = f"task {pair.recorded_id[:16]}… (submitted at line {pair.line})"
        mine, theirs = _by_state(pair.recorded), _by_state(pair.target)
        for state in ("queued", "processing"):
            if state in mine and state in theirs:
                self._compare(f"{label}, {state}", mine[state], theirs[state], ids, running=True)
        ended = [s for s in mine if s in TERMINAL]
        if not ended:
            return  # the recording never saw it end: nothing final to compare
        if not any(s in TERMINAL for s in theirs):
            self.differences.append(
                f"{label}: it ended {ended[0]!r} in the recording but not on the target within "
                f"{self.options.deadline:g} s"
            )
            return
        final = next(s for s in theirs if s in TERMINAL)
        self._compare(f"{label}, final", mine[ended[0]], theirs[final], ids)


def _by_state(answers: list[Got]) -> dict[str, Got]:
    """The first answer of each running state, and the last answer once ended."""
    found: dict[str, Got] = {}
    for got in answers:
        status = str((_task(got) or {}).get("status"))
        if status in TERMINAL or status not in found:
            found[status] = got
    return found


def run_parity(
    directory: Path,
    options: ParityOptions,
    out: Callable[[str], None] = print,
    report_dir: str | None = None,
    **kwargs: Any,
) -> int:
    try:
        cassette = Cassette.load(directory)
    except FileNotFoundError as exc:
        out(f"parity: {exc}")
        return EXIT_ERROR
    if not options.against.startswith(("http://", "https://")):
        out(f"parity: --against must be an http(s) URL, got {options.against!r}")
        return EXIT_ERROR
    submissions = sum(1 for ex in cassette.exchanges if ex.kind == "submit")
    if submissions and not local(options.against) and not options.allow_generation:
        out(
            f"parity: {options.against} is not on this machine and the cassette holds "
            f"{submissions} submission(s), each a task it may bill: pass --allow-generation"
        )
        return EXIT_ERROR
    parity = Parity(cassette, options, **kwargs)
    if parity.key is None:
        out("parity: a service off this machine needs a key: --api-key or IMAGE_API_KEY")
        return EXIT_ERROR
    try:
        parity.run()
    except httpx.HTTPError as exc:
        out(f"parity: could not run: {options.against} did not answer ({exc})")
        return EXIT_ERROR
    finally:
        parity.close()
    text = summary(parity, directory)
    out(text)
    if report_dir:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        (Path(report_dir) / "parity.txt").write_text(text + "\n", "utf-8")
    return EXIT_DIFFERENT if parity.differences else EXIT_OK


def summary(parity: Parity, directory: Path) -> str:
    found = len(parity.differences)
    lines = [
        f"parity of {parity.options.against} with the cassette {directory}: "
        + (f"{found} difference(s)" if found else "no differences"),
        f"({parity.sent} request(s) sent, {parity.compared} answer(s) compared; ids, times, "
        "URL hosts, messages and running progress ignored"
        + (f", and {', '.join(parity.options.ignore)}" if parity.options.ignore else "")
        + ")",
    ]
    lines += [f"  - {line}" for line in parity.differences]
    if parity.notes or parity.cassette.warnings:
        lines += ["", "== not compared"]
        lines += [f"  {note}" for note in [*parity.notes, *parity.cassette.warnings]]
    return "\n".join(lines)


__all__ = ["Parity", "ParityOptions", "run_parity", "summary"]
