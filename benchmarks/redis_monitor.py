"""What each request of the emulator sends to Redis, as Redis's ``MONITOR`` shows it: one
submission and its polls (benchmarks/redis_capacity.py's step 1), between marks (``ECHO``)
that tell the steps apart, with the commands Redis ran inside each script and the scripts named
by the Redis store's own modules."""

from __future__ import annotations

import hashlib
import re
import socket
import time
from dataclasses import dataclass, field

import httpx

from . import internals
from .scaling import BODY, KEY

#: The store prefix of the emulator measured (its keys, as MONITOR shows them).
PREFIX = "capacity"
#: The ``ECHO`` that starts each marked step.
MARK = "bench-mark:"
_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}


def parse_monitor_line(line: str) -> tuple[str, list[bytes]] | None:
    """``+<time> [<db> <client>] "ARG" "ARG" ...`` -> (client, args); Redis quotes each
    argument as sdscatrepr does (backslash escapes and \\xHH)."""
    head = re.match(r"\+?[\d.]+ \[\d+ ([^\]]+)\] ", line)
    if head is None:
        return None
    args: list[bytes] = []
    i, text = head.end(), line
    while i < len(text):
        if text[i] != '"':
            i += 1
            continue
        i += 1
        out = bytearray()
        while text[i] != '"':
            if text[i] == "\\":
                nxt = text[i + 1]
                if nxt == "x":
                    out.append(int(text[i + 2 : i + 4], 16))
                    i += 4
                    continue
                out += _ESCAPES.get(nxt, nxt.encode())
                i += 2
                continue
            out += text[i].encode()
            i += 1
        args.append(bytes(out))
        i += 1
    return head.group(1), args


def script_names() -> dict[str, str]:
    """SHA-1 -> name of every Lua script of the Redis store (empty if the modules moved)."""
    try:
        modules = internals.redis_scripts()  # only to name what MONITOR shows
    except ImportError:
        return {}
    names = {}
    for module in modules:
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str) and "redis.call" in value:
                names[hashlib.sha1(value.encode()).hexdigest()] = name
    return names


@dataclass
class Call:
    """One command the emulator sent, and the commands Redis ran inside it (a script)."""

    args: list[bytes]
    inner: list[str] = field(default_factory=list)

    def name(self, names: dict[str, str]) -> str:
        command = self.args[0].decode().upper()
        if command != "EVALSHA":
            return command
        sha = self.args[1].decode()
        script = names.get(sha, f"script {sha[:8]}")
        # SNAPSHOT's mode (ARGV[5]: get, count, none) changes what it does.
        numkeys = int(self.args[2])
        argv = self.args[3 + numkeys :]
        if script == "SNAPSHOT" and len(argv) >= 5:
            return f"SNAPSHOT {argv[4].decode()}"
        return script

    def is_journal(self, names: dict[str, str]) -> bool:
        return self.name(names) == "JOURNAL" or (
            len(self.args) > 3 and self.args[2] == b"2" and self.args[3].endswith(b":journal")
        )


class Monitor:
    """A raw ``MONITOR`` connection, read after the fact (the kernel buffers what it sends)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        self.buffer = b""
        while b"\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        self.buffer = self.buffer.split(b"\r\n", 1)[1]  # "+OK"

    def lines_until(self, last_mark: str, seconds: float) -> list[str]:
        """Everything MONITOR saw, up to ``seconds`` after the mark ``last_mark`` appeared
        (the journal is written behind the answers, within milliseconds)."""
        deadline: float | None = None
        give_up = time.monotonic() + 30
        self.sock.settimeout(0.1)
        while time.monotonic() < give_up and (deadline is None or time.monotonic() < deadline):
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                chunk = b""
            self.buffer += chunk
            if deadline is None and f'"{MARK}{last_mark}"'.encode() in self.buffer:
                deadline = time.monotonic() + seconds
        self.sock.close()
        return [ln for ln in self.buffer.decode("utf-8", "replace").split("\r\n") if ln]


def segments(lines: list[str], names: dict[str, str]) -> tuple[dict[str, list[Call]], list[Call]]:
    """The emulator's calls per marked step, and its journal writes (which run behind)."""
    steps: dict[str, list[Call]] = {}
    journal: list[Call] = []
    current: list[Call] | None = None
    last: Call | None = None
    for line in lines:
        parsed = parse_monitor_line(line)
        if parsed is None:
            continue
        client, args = parsed
        if args and args[0].upper() == b"ECHO" and args[1].startswith(MARK.encode()):
            current = steps.setdefault(args[1].decode()[len(MARK) :], [])
            continue
        if client == "lua":
            if last is not None:
                last.inner.append(args[0].decode().upper())
            continue
        last = Call(args)
        if last.is_journal(names):
            journal.append(last)
        elif current is not None:
            current.append(last)
    return steps, journal


HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
WARM = "warm-up: submit, advance, poll (first use: scripts loaded, expiry sweep)"
STEPS = ("submit", "poll (running)", "advance clock", "poll (ended: settles)", "poll (settled)")
#: The journal's row: one call of the batch script (JOURNAL), replayed as captured, with the
#: entries that call carried (the store writes every entry queued meanwhile in one call).
JOURNAL_ROW = "JOURNAL (one batch call of {entries})"


def journal_entries(call: Call) -> int:
    """Entries one JOURNAL call carries: two arguments each (JSON, limit) after its keys."""
    numkeys = int(call.args[2])
    return (len(call.args) - 3 - numkeys) // 2


def journal_row(entries: int) -> str:
    return JOURNAL_ROW.format(entries=f"{entries} entr{'y' if entries == 1 else 'ies'}")


def capture(redis_port: int, base: str) -> tuple[dict[str, list[Call]], list[Call], str]:
    """Each step's commands, the journal's writes, and the id of the task submitted."""
    names = script_names()
    monitor = Monitor(redis_port)
    marker = socket.create_connection(("127.0.0.1", redis_port), timeout=5)

    def mark(label: str) -> None:
        data = f"{MARK}{label}".encode()
        marker.sendall(b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(data), data))
        marker.recv(1024)

    with httpx.Client(base_url=base, headers=HEADERS, timeout=10) as client:
        # The first cycle loads each script into Redis (NOSCRIPT, SCRIPT LOAD, again) and
        # runs the expiry sweep (every 256th submission): shown apart from the steady state.
        mark(WARM)
        warm_id = client.post("/v1/images/tasks", content=BODY).json()["data"]["task_id"]
        client.post("/_emulator/clock/advance", json={"seconds": 3600}).raise_for_status()
        client.get(f"/v1/images/tasks/{warm_id}").raise_for_status()
        mark(STEPS[0])
        task_id = client.post("/v1/images/tasks", content=BODY).json()["data"]["task_id"]
        mark(STEPS[1])
        client.get(f"/v1/images/tasks/{task_id}").raise_for_status()
        mark(STEPS[2])
        client.post("/_emulator/clock/advance", json={"seconds": 3600}).raise_for_status()
        for step in STEPS[3:]:
            mark(step)
            client.get(f"/v1/images/tasks/{task_id}").raise_for_status()
        mark("end")
    marker.close()
    steps, journal = segments(monitor.lines_until("end", 0.5), names)
    steps.pop("end", None)
    return steps, journal, task_id
