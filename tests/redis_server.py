"""A real Redis server for tests: started on a free loopback port, stopped by its PID.

A test module makes its fixture with ``yield from running_redis()``; its tests keep apart by key
prefix. Tests that need their own (one they stop and restart) build a
``RedisServer`` themselves. When ``redis-server`` is not installed the tests that need it are
skipped with the command that installs it (``make setup`` does, as root).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = shutil.which("redis-server")
INSTALL_HINT = "redis-server is not installed: run `make setup` (or apt-get install redis-server)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process with its own directory; its append-only file survives
    ``stop``/``start`` so a restart keeps what Redis had acknowledged."""

    def __init__(self, port: int | None = None) -> None:
        if SERVER is None:
            # Fail, not skip: a suite that passes without its atomicity tests proves nothing.
            pytest.fail(INSTALL_HINT)
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="emulator-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert SERVER is not None
        args = [SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        # No RDB snapshots; an AOF written on every command, so nothing acknowledged is lost.
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        args += ["--protected-mode", "yes", "--daemonize", "no", "--logfile", "redis.log"]
        # DEBUG SLEEP (loopback clients only) lets a test stall the server like a slow disk.
        args += ["--enable-debug-command", "local"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not _answers_ping(self.port):  # readiness, bounded
            if self.process.poll() is not None or time.monotonic() > deadline:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}: {err}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF and exits), then wait; SIGKILL only if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
        if process.stderr:
            process.stderr.close()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def running_redis() -> Iterator[RedisServer]:
    """Body of a ``redis_server`` fixture: a started server, removed afterwards."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.remove()
