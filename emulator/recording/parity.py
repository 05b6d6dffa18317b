"""``parity DIR --against URL``: the recorded requests sent to another service (usually the
emulator), its answers diffed with the recorded ones (`snapshot`).

Requests go out in recorded order with the caller's key (``--api-key``; the cassette has none),
but a request whose key the recorded service refused (401) with a made-up key.
A submission's answer is compared at once; a task it creates is then known by its new id.
Polls are compared by state, not by position, because the two services need not take the same
time: the first answer of each running state (``queued``, ``processing``) on both sides, and the
final answer, after polling the target until the task ends (``--deadline``). Other answers
(refusals, unknown tasks) are compared one to one. Submissions are never sent to a service off
this machine unless ``--allow-generation`` says they may be (they may be billed).

Nothing seen is never a pass: a state the recording saw and the target never answered, a poll
answered without the task, an exchange past its bounds (`target`) are differences; what the
recording cannot say (a task never polled or never seen ending) is listed as not compared; and
a run that compared nothing (an empty cassette) could not tell: exit 2, as a fault of parity
itself is, never 1 (differences).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..conformance.checks import unwrap
from .cassette import Cassette
from .evidence import TERMINAL, Sent, gather
from .snapshot import diff, normalize
from .target import Got, NoAnswer, Target, http_url, local, media_type

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2
#: The key sent to a service on this machine when none is given (an emulator takes any).
LOCAL_KEY = "sk-parity"
#: The key sent where the recorded service refused the recorded key (answered 401): `conform`
#: sends made-up keys on purpose, and the caller's valid key would turn each into a difference.
REFUSED_KEY = "sk-parity-made-up-key"
RUNNING = ("queued", "processing")


@dataclass(frozen=True, slots=True)
class ParityOptions:
    against: str
    api_key: str | None = None
    allow_generation: bool = False
    poll_interval: float = 0.5
    deadline: float = 120.0
    ignore: tuple[str, ...] = ()
    #: Seconds one exchange may take in all (connect, head and body).
    request_deadline: float = 30.0


@dataclass(slots=True)
class Pair:
    """A task on both sides: the recorded answers and the target's (polls; the submissions'
    states apart)."""

    recorded_id: str
    target_id: str
    line: int
    submitted: tuple[str, str] = ("", "")
    recorded: list[Got] = field(default_factory=list)
    target: list[Got] = field(default_factory=list)
    #: Why a poll of it had no answer -> where that was said: one difference, not one per poll.
    unanswered: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"task {self.recorded_id[:16]}… (submitted at line {self.line})"


class CouldNotRun(Exception):
    """The target never answered: nothing can be compared."""


def _got_recorded(sent: Sent) -> Got:
    media = media_type(sent.exchange.content_type)
    return Got(sent.status or 0, media, sent.data, sent.response_body or b"")


def _task(got: Got) -> dict[str, Any] | None:
    unwrapped = unwrap(got.data) if 200 <= got.status < 300 else None
    return None if unwrapped is None else unwrapped[1]


def _status(got: Got) -> str:
    return str((_task(got) or {}).get("status"))


def _described(got: Got) -> str:
    """An answer in a few words: status, media type and the start of its body."""
    body = got.raw[:120].decode("utf-8", "replace")
    more = "…" if len(got.raw) > 120 else ""
    return f"{got.status} ({got.media_type or 'no content type'}) {body!r}{more}"


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
        self.target = Target(
            options.against, deadline=options.request_deadline, transport=transport
        )
        self.differences: list[str] = []
        self.notes: list[str] = []
        self.compared = 0
        self.sent = 0
        #: Why nothing could be compared (exit 2), when so.
        self.could_not_tell: str | None = None

    def close(self) -> None:
        self.target.close()

    def _send(
        self,
        label: str,
        method: str,
        path: str,
        *,
        keyed: bool,
        refused: bool = False,
        content_type: str = "",
        body: bytes | None = None,
        task: Pair | None = None,
    ) -> Got | None:
        """The target's answer; None (and a difference, one per ``task`` and cause) if none.
        ``refused``: the recorded key was refused, so a made-up one is sent in its place."""
        headers = {}
        key = REFUSED_KEY if refused else self.key
        if keyed and key:
            headers["Authorization"] = f"Bearer {key}"
        if content_type:
            headers["Content-Type"] = content_type
        try:
            got = self.target.send(method, path, headers, body)
        except NoAnswer as exc:
            if self.sent == 0 and not exc.reached:
                raise CouldNotRun(str(exc)) from None
            self.sent += 1
            first = task.unanswered.get(str(exc)) if task is not None else None
            if first is not None:
                self.notes.append(
                    f"{label}: the target gave no answer again, as to {first} (one difference)"
                )
                return None
            if task is not None:
                task.unanswered[str(exc)] = label
            self.differences.append(f"{label}: the target gave no answer ({exc})")
            return None
        self.sent += 1
        return got

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
        if not evidence.sent:
            self.could_not_tell = "the cassette holds no exchange of the task routes"
            return
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
            label = f"line {ex.line} ({ex.method} {ex.path})"
            got = self._send(
                label,
                ex.method,
                path + (f"?{ex.query}" if ex.query else ""),
                keyed=ex.keyed,
                refused=ex.keyed and ex.status == 401,
                content_type=ex.request_content_type,
                body=item.request_body,
                task=pair,
            )
            recorded = _got_recorded(item)
            if pair is not None and _task(recorded) is not None:
                # The recording polled it whether or not the target answered this poll: what it
                # saw is still compared by state at the end (not "never polled").
                pair.recorded.append(recorded)
            if got is None:
                continue
            if pair is not None:
                # A task answer on each side is compared by state at the end, not here.
                if _task(got) is not None:
                    pair.target.append(got)
                if _task(recorded) is not None and _task(got) is not None:
                    continue
            ids = frozenset(i for i in (ex.task_id, pair.target_id if pair else None) if i)
            if ex.kind == "submit":
                target_task = _task(got)
                ids = frozenset(
                    str(i) for i in (ex.task_id, (target_task or {}).get("task_id")) if i
                )
                self._compare(label, recorded, got, ids)
                if ex.task_id and target_task is not None and _task(recorded) is not None:
                    pair = Pair(ex.task_id, str(target_task.get("task_id")), ex.line)
                    pair.submitted = (_status(recorded), _status(got))
                    pairs[ex.task_id] = pair
            else:
                self._compare(label, recorded, got, ids)
        for pair in pairs.values():
            self._finish(pair)
        if self.compared == 0 and not self.differences:
            self.could_not_tell = "not one recorded answer could be compared"

    def _finish(self, pair: Pair) -> None:
        """Poll the target's task until it ends, then compare the two by state."""
        if not pair.recorded:
            self.notes.append(
                f"{pair.label}: the recording never polled it; only its submission compared"
            )
            return
        started = self.clock()
        while not pair.target or _status(pair.target[-1]) not in TERMINAL:
            if self.clock() - started > self.options.deadline:
                break
            if pair.target:
                self.sleep(self.options.poll_interval)
            got = self._send(
                pair.label, "GET", f"/v1/images/tasks/{pair.target_id}", keyed=True, task=pair
            )
            if got is None:
                return
            if _task(got) is None:
                self.differences.append(
                    f"{pair.label}: a poll of its task on the target answered {_described(got)}, "
                    "not the task"
                )
                return
            pair.target.append(got)
        self._by_states(pair)

    def _by_states(self, pair: Pair) -> None:
        ids, label = frozenset({pair.recorded_id, pair.target_id}), pair.label
        mine, theirs = _by_state(pair.recorded), _by_state(pair.target)
        for state in RUNNING:
            if state in mine and state in theirs:
                self._compare(f"{label}, {state}", mine[state], theirs[state], ids, running=True)
            elif state in mine and state != pair.submitted[1]:
                self.differences.append(
                    f"{label}: the recording saw it {state!r}; the target never answered "
                    f"{state!r} ({len(pair.target)} poll(s), every {self.options.poll_interval:g}"
                    " s after the recorded ones)"
                )
            elif state in theirs and state != pair.submitted[0]:
                self.notes.append(
                    f"{label}: the recording's polls never saw it {state!r}; that state not "
                    "compared"
                )
        ended = [s for s in mine if s in TERMINAL]
        if not ended:
            self.notes.append(
                f"{label}: the recording never saw it end; its final answer not compared"
            )
            return
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
        status = _status(got)
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
    """Exit 0 (no difference), 1 (differences) or 2 (could not run or tell). A fault of parity
    itself, wherever it happens (reading the cassette, comparing, writing the report), is 2:
    left to propagate it would end the process with 1 and read as a difference."""
    started: list[Parity] = []
    try:
        return _run_parity(directory, options, out, report_dir, started, **kwargs)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        sent = started[0].sent if started else 0
        out(
            f"parity: could not tell: parity itself failed ({type(exc).__name__}: {exc}) after "
            f"{sent} request(s); this is a fault of parity, not a difference"
        )
        return EXIT_ERROR


def _run_parity(
    directory: Path,
    options: ParityOptions,
    out: Callable[[str], None],
    report_dir: str | None,
    started: list[Parity],
    **kwargs: Any,
) -> int:
    try:
        cassette = Cassette.load(directory)
    except FileNotFoundError as exc:
        out(f"parity: {exc}")
        return EXIT_ERROR
    if not http_url(options.against):
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
    started.append(parity)
    try:
        if parity.key is None:
            out("parity: a service off this machine needs a key: --api-key or IMAGE_API_KEY")
            return EXIT_ERROR
        parity.run()
    except CouldNotRun as exc:
        out(f"parity: could not run: {options.against} did not answer ({exc})")
        return EXIT_ERROR
    finally:
        parity.close()
    text = summary(parity, directory)
    out(text)
    if report_dir:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        (Path(report_dir) / "parity.txt").write_text(text + "\n", "utf-8")
    if parity.differences:
        return EXIT_DIFFERENT
    return EXIT_ERROR if parity.could_not_tell else EXIT_OK


def summary(parity: Parity, directory: Path) -> str:
    found = len(parity.differences)
    if found:
        headline = f"{found} difference(s)"
    elif parity.could_not_tell:
        headline = f"could not tell: {parity.could_not_tell}"
    else:
        headline = "no differences"
    lines = [
        f"parity of {parity.options.against} with the cassette {directory}: {headline}",
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
