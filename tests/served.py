"""An emulator served by ``python -m emulator serve`` in a process of its own, on a free loopback
port: what users run, with its own memory to measure. Stopped by its PID. And ``serve`` refusing
to start (`serve_refused`)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def hermetic_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the caller's EMULATOR_* settings, plus ``env``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")}
    return kept | (env or {})


def serve_refused(*args: str) -> str:
    """What ``python -m emulator serve`` with ``args`` writes to stderr as it refuses to start
    (exit 2, asserted). On a free loopback port: should it start after all, it serves nowhere
    another test or user listens, and the timeout fails the test."""
    command = [sys.executable, "-m", "emulator", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(free_port()), *args]
    done = subprocess.run(command, env=hermetic_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    return done.stderr


class Served:
    """``with Served("--http", "h11") as server: ...``; extra settings through ``env``."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.args = args
        # Hermetic: none of the caller's EMULATOR_* settings leak in.
        self.env = hermetic_env(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Served:
        cmd = [sys.executable, "-m", "emulator", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--log-level", "warning", *self.args]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while True:  # readiness, bounded
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"serve exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                if self.request("GET", "/_emulator/health", timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not answer health within 30 s")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def submit(self, payload: dict[str, Any], key: str = "sk-served") -> tuple[int, Any]:
        status, body = self.request(
            "POST",
            "/v1/images/tasks",
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        return status, json.loads(body)

    def memory_kib(self, field: str = "VmRSS") -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak so far) of the server process, KiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {field} in /proc/{self.proc.pid}/status")

    def reset_peak(self) -> None:
        """Start a new ``VmHWM`` from the current RSS (Linux: write 5 to clear_refs)."""
        assert self.proc is not None
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
