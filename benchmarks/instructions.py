"""Instructions per request, in process: a paired measure the machine's load cannot move.

Wall-clock pairs on the shared 2-core machine vary by ±15 %; instruction counts by
``valgrind --tool=callgrind`` repeat to about ±1 %. This runs the emulator's ASGI app in
process (``await app(scope, receive, send)``: no server, no sockets), after a warm-up of
submissions and polls, and counts the instructions of ``N`` and of ``2 N`` requests of one kind
in two processes: their difference over ``N`` is one request's cost, start-up and warm-up
cancelled out. Compare two trees with ``--src`` (the tree to import ``emulator`` from), A B A B.

    python -m benchmarks.instructions                  # submit and poll, this tree
    python -m benchmarks.instructions --src ../other   # the same for another checkout

Needs valgrind (Debian: ``apt-get install valgrind``); exits 2 naming it when it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench"
BODY = json.dumps({"model": "NanoBanana2-0.5K", "prompt": "a red cube"}).encode()
KINDS = ("submit", "poll")
WARM_UP = 200
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")

Message = MutableMapping[str, Any]


def _scope(method: str, path: str, body: bytes = b"") -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {KEY}".encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }


def _receive(body: bytes) -> Callable[[], Awaitable[Message]]:
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    return receive


async def _run(kind: str, requests: int) -> None:
    """The child: a warm-up, then ``requests`` requests of ``kind``; every answer a 200."""
    from emulator import Settings, create_app

    app = create_app(Settings(seed=1, time_scale=0, api_keys=(KEY,)))
    await app.state.emulator.start()
    answers: list[Message] = []

    async def send(message: Message) -> None:
        answers.append(message)

    async def submit(count: int) -> list[str]:
        for _ in range(count):
            await app(_scope("POST", "/v1/images/tasks", BODY), _receive(BODY), send)
        bodies = [m["body"] for m in answers if m["type"] == "http.response.body"]
        statuses = [m["status"] for m in answers if m["type"] == "http.response.start"]
        answers.clear()
        if statuses != [200] * count:
            raise RuntimeError(f"submissions answered {sorted(set(statuses))}, not only 200")
        return [json.loads(b)["data"]["task_id"] for b in bodies]

    async def poll(ids: list[str]) -> None:
        for task_id in ids:
            await app(_scope("GET", f"/v1/images/tasks/{task_id}"), _receive(b""), send)
        statuses = [m["status"] for m in answers if m["type"] == "http.response.start"]
        answers.clear()
        if statuses != [200] * len(ids):
            raise RuntimeError(f"polls answered {sorted(set(statuses))}, not only 200")

    warm = await submit(WARM_UP)
    await poll(warm)  # finished tasks (time_scale 0): their answers are kept from now on
    if kind == "submit":
        await submit(requests)
    else:
        await poll([warm[i % len(warm)] for i in range(requests)])
    await app.state.emulator.store.close()


def collected(valgrind_output: str) -> int:
    """The instruction count callgrind prints when its process ends."""
    found = _COLLECTED.findall(valgrind_output)
    if not found:
        raise RuntimeError(f"no 'Collected' line in valgrind's output:\n{valgrind_output[-2000:]}")
    return int(found[-1])


def per_request(count_n: int, count_2n: int, requests: int) -> float:
    """One request's instructions from runs of ``requests`` and ``2 * requests``."""
    if count_2n <= count_n:
        raise RuntimeError(
            f"{2 * requests} requests counted {count_2n} instructions, not more than "
            f"{requests} requests' {count_n}: the measure is broken"
        )
    return (count_2n - count_n) / requests


def _count(kind: str, requests: int, src: Path) -> int:
    env = os.environ | {"PYTHONPATH": str(src)}
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            # The file, not ``-m``: ``-m`` would put this tree first on the path, and the
            # emulator measured would be this tree's whatever ``src`` says.
            __file__,
            "--child",
            kind,
            str(requests),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} x{requests} under valgrind failed:\n{proc.stderr[-3000:]}")
    measured = Path(proc.stdout.strip().splitlines()[-1])
    if not measured.is_relative_to(src):
        raise RuntimeError(f"measured the emulator of {measured}, not of {src}")
    return collected(proc.stderr)


def measure(src: Path, requests: int) -> dict[str, float]:
    return {
        kind: per_request(_count(kind, requests, src), _count(kind, 2 * requests, src), requests)
        for kind in KINDS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("--src", type=Path, default=ROOT, help="tree to import emulator from")
    parser.add_argument("--requests", type=int, default=200, help="N (and 2 N) per kind")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, count = args.child
        if kind not in KINDS:
            parser.error(f"--child KIND must be one of {', '.join(KINDS)}")
        import emulator

        print(os.path.dirname(os.path.dirname(os.path.abspath(emulator.__file__))))
        asyncio.run(_run(kind, int(count)))
        return 0
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    if shutil.which("valgrind") is None:
        print("valgrind is missing: apt-get install valgrind", file=sys.stderr)
        return 2
    if not (args.src / "emulator" / "__init__.py").is_file():
        parser.error(f"--src {args.src}: no emulator package there")
    result = measure(args.src.resolve(), args.requests)
    print(json.dumps({"src": str(args.src.resolve()), "instructions_per_request": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
