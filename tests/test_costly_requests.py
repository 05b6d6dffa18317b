"""Requests built to cost the server a lot, sent to a served emulator (its own process): the
others keep being answered and its memory stays bounded.

Liveness bounds here are wide on purpose (the issue's "under 1 s" while a request that used to
stall the server for 12-16 s is in flight); speed itself is measured by benchmarks.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .served import Served

#: 16 million zeros in one array: 32 MB, under the default max_body_bytes of 32 MiB.
ZEROS = b'{"images":[' + b"0," * 15_999_999 + b"0]}"
#: 2.4 million member names.
KEYS = b"{" + b",".join(b'"k%d":0' % i for i in range(2_400_000)) + b"}"
AUTH = {"Authorization": "Bearer sk-costly", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with Served() as served:
        yield served


def _slowest_poll_while(server: Served, body: bytes) -> tuple[float, int, bytes]:
    """Send ``body`` as a submission; meanwhile poll a task; (slowest poll s, status, answer)."""
    status, created = server.submit({"model": "NanoBanana", "prompt": "bystander"}, "sk-costly")
    assert status == 200
    task_path = f"/v1/images/tasks/{created['data']['task_id']}"
    answer: list[tuple[int, bytes]] = []

    def hostile() -> None:
        answer.append(server.request("POST", "/v1/images/tasks", body, AUTH, timeout=120))

    sender = threading.Thread(target=hostile)
    sender.start()
    slowest = 0.0
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        while sender.is_alive():
            started = time.perf_counter()
            conn.request("GET", task_path, headers=AUTH)
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            slowest = max(slowest, time.perf_counter() - started)
    finally:
        conn.close()
        sender.join(120)
    return slowest, *answer[0]


@pytest.mark.parametrize("body", [ZEROS, KEYS], ids=["16M array items", "2.4M member names"])
def test_a_huge_json_structure_is_refused_while_polls_keep_answering(
    server: Served, body: bytes
) -> None:
    slowest, status, answer = _slowest_poll_while(server, body)
    assert status == 400, answer[:300]
    assert b"max_json_items" in answer
    assert slowest < 1.0, f"a poll waited {slowest:.2f} s"


def _bomb_png(width: int = 7000, height: int = 7000) -> bytes:
    """A small PNG declaring width x height RGBA pixels (49 Mpx: 196 MB decoded), all zero."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(data, zlib.crc32(kind))
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    deflate = zlib.compressobj(9)
    row = bytes(1 + 4 * width)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _concurrently(count: int, send: Any) -> list[Any]:
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        results[i] = send(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return results


def test_eight_concurrent_49_megapixel_references_keep_memory_bounded() -> None:
    bomb = _bomb_png()
    assert len(bomb) < 300_000
    url = "data:image/png;base64," + base64.b64encode(bomb).decode()
    body = json.dumps({"model": "NanoBanana", "prompt": "bomb", "image": url}).encode()
    with Served() as server:
        assert server.submit({"model": "NanoBanana", "prompt": "warm"}, "sk-costly")[0] == 200
        server.reset_peak()
        before = server.memory_kib()
        answers = _concurrently(
            8, lambda i: server.request("POST", "/v1/images/tasks", body, AUTH, timeout=300)
        )
        peak = server.memory_kib("VmHWM")
        after = server.memory_kib()
    assert [status for status, _ in answers] == [200] * 8, answers[0][1][:300]
    assert (peak - before) / 1024 < 800, f"RSS grew {(peak - before) / 1024:.0f} MiB at its peak"
    assert (after - before) / 1024 < 100, f"RSS stayed {(after - before) / 1024:.0f} MiB higher"


def test_references_to_our_own_8k_result_do_not_render_it_in_full() -> None:
    with Served("--time-scale", "0") as server:
        status, created = server.submit({"model": "NanoBananaPro-8K", "prompt": "big"}, "sk-costly")
        assert status == 200
        task_path = f"/v1/images/tasks/{created['data']['task_id']}"
        _, polled = server.request("GET", task_path, headers=AUTH)
        result_url = json.loads(polled)["data"]["result_url"]
        assert result_url
        server.reset_peak()
        before = server.memory_kib()
        payload = {"model": "NanoBanana", "prompt": "again", "image": result_url}
        answers = _concurrently(8, lambda i: server.submit(payload, "sk-costly"))
        peak = server.memory_kib("VmHWM")
    assert [status for status, _ in answers] == [200] * 8
    assert (peak - before) / 1024 < 200, f"RSS grew {(peak - before) / 1024:.0f} MiB at its peak"
