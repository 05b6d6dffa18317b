"""A deadline for all of one request (connect, head and body), which httpx does not have: its
timeouts bound each read, and a service trickling a byte every few seconds never trips them."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class Deadline:
    """Cuts the connection of one request after ``seconds``: a timer shuts its socket down
    (which wakes a blocked read), so a trickling service ends as an error, not a hang."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                with self._lock:
                    self._sockets.append(sock)
                    fired = self.fired
                if fired:
                    self._shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()
