"""Request heads are bounded in size and time at the protocol layer, for both HTTP parsers:
raw sockets against ``python -m emulator serve --http h11|httptools`` on a free loopback port.
"""

from __future__ import annotations

import inspect
import itertools
import re
import select
import socket
import time
from collections.abc import Iterator

import pytest

from .served import Served

PARSERS = ["h11", "httptools"]
CHUNK = b"a" * 65536


@pytest.fixture(scope="module", params=PARSERS)
def server(request: pytest.FixtureRequest) -> Iterator[Served]:
    with Served("--http", request.param, env={"EMULATOR_HEADER_TIMEOUT": "1"}) as served:
        yield served


def _connect(server: Served, timeout: float = 15) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket's timeout)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    parts = answer.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _answers(data: bytes) -> list[int]:
    """The statuses of the answers in ``data`` (a body runs straight into the next answer)."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", data)]


def test_an_endless_header_is_refused_with_431_once_past_the_limit(server: Served) -> None:
    before = server.memory_kib()
    sent = 0
    answer = b""
    with _connect(server) as sock:
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        # Up to 64 MiB of one header value, never ended; the server must answer long before.
        while sent < 64 * 1024 * 1024:
            try:
                sock.sendall(CHUNK)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(CHUNK)
            if select.select([sock], [], [], 0)[0]:
                break
        answer = _read_all(sock)
    assert _status(answer) == 431, answer[:300]
    assert b"header_too_large" in answer and b"larger than the limit of" in answer
    # Refused within a few reads of the limit (64 KiB of headers + 16 KiB for the request line).
    assert sent < 4 * 1024 * 1024, f"{sent} bytes were taken before the refusal"
    assert server.memory_kib() - before < 32 * 1024
    assert server.request("GET", "/_emulator/health")[0] == 200


def test_a_head_not_complete_in_time_is_answered_408(server: Served) -> None:
    started = time.monotonic()
    with _connect(server) as sock:
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = _read_all(sock)
    assert _status(answer) == 408, answer[:300]
    assert b"request_timeout" in answer and b"header_timeout" in answer
    assert time.monotonic() - started < 10  # header_timeout is 1 s here


def test_a_head_dripping_in_is_timed_from_its_start_not_per_byte(server: Served) -> None:
    answer = b""
    with _connect(server) as sock:
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + 15
        # A byte every 0.2 s: an idle timeout of 1 s would never fire; the head's deadline does.
        while time.monotonic() < deadline:
            if select.select([sock], [], [], 0.2)[0]:
                answer = _read_all(sock)
                break
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                answer = _read_all(sock)
                break
    assert _status(answer) == 408, answer[:300]


def test_a_connection_that_sends_nothing_is_closed(server: Served) -> None:
    with _connect(server) as sock:
        try:
            assert sock.recv(1) == b""  # closed by the server, without an answer
        except TimeoutError:
            pytest.fail("a connection that sent nothing was held open for 15 s")


def test_kept_alive_and_pipelined_requests_are_unaffected(server: Served) -> None:
    one = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with _connect(server, timeout=5) as sock:
        sock.sendall(one + one)  # pipelined: two heads in one write
        data = b""
        while len(_answers(data)) < 2:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        sock.sendall(last)  # and a third on the same connection
        data += _read_all(sock)
    assert _answers(data) == [200, 200, 200]


def test_a_body_in_the_same_read_as_its_head_is_not_counted_as_head(server: Served) -> None:
    body = b'{"model": "NanoBanana", "prompt": "' + b"p" * 500_000 + b'"}'
    head = (
        b"POST /v1/images/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-guard\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
    )
    with _connect(server, timeout=15) as sock:
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
        answer = _read_all(sock)
    # The prompt is over max_prompt_chars: the app's 400, not the protocol's 431.
    assert _status(answer) == 400, answer[:300]
    assert b"prompt" in answer


def test_headers_over_the_setting_within_the_protocol_slack_still_get_the_apps_431(
    server: Served,
) -> None:
    big = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
    with _connect(server) as sock:
        sock.sendall(big + b"a" * 70_000 + b"\r\n\r\n")
        answer = _read_all(sock)
    assert _status(answer) == 431, answer[:300]
    assert b"headers are larger than the limit of 65536 bytes" in answer


def test_a_heads_end_is_where_the_empty_line_pattern_ends() -> None:
    # Every string of up to 8 bytes of CR, LF and "a", each also behind a request line: the
    # two finds of `head_end` against the regular expression they replace.
    from emulator.http.protocols import head_end

    pattern = re.compile(rb"\r?\n\r?\n")
    checked = 0
    for length in range(9):
        for letters in itertools.product(b"\r\na", repeat=length):
            for data in (bytes(letters), b"GET / HTTP/1.1\r\nHost: x" + bytes(letters)):
                found = pattern.search(data)
                assert head_end(data) == (-1 if found is None else found.end()), data
                checked += 1
    assert checked == 2 * sum(3**n for n in range(9))


def test_the_guard_still_finds_what_it_needs_in_uvicorn() -> None:
    """The guard subclasses uvicorn's protocol classes and uses a few of their internals; if
    uvicorn renames or moves them, this fails before any server quietly loses its limits."""
    import h11
    from uvicorn.config import Config
    from uvicorn.protocols.http import h11_impl, httptools_impl

    from emulator.http import protocols as http_guard

    for module, cls in (
        (h11_impl, h11_impl.H11Protocol),
        (httptools_impl, httptools_impl.HttpToolsProtocol),
    ):
        init = inspect.getsource(cls.__init__)
        assert "self.cycle" in init and "self.transport" in init and "self.loop" in init
        for name in ("connection_made", "connection_lost", "data_received"):
            assert callable(getattr(cls, name)), (cls, name)
        cycle_init = inspect.getsource(module.RequestResponseCycle.__init__)
        assert "self.response_complete = False" in cycle_init
    assert "self.conn = h11.Connection" in inspect.getsource(h11_impl.H11Protocol.__init__)
    assert h11.SEND_BODY is not None
    for name in ("on_headers_complete", "on_message_complete"):
        assert callable(getattr(httptools_impl.HttpToolsProtocol, name))
    # uvicorn accepts a protocol factory (not only a name) for `http`.
    load = inspect.getsource(Config.load)
    assert "self.http_protocol_class = self.http" in load
    assert issubclass(http_guard.GuardedH11Protocol, h11_impl.H11Protocol)
    assert issubclass(http_guard.GuardedHttpToolsProtocol, httptools_impl.HttpToolsProtocol)
