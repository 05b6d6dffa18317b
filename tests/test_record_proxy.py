"""``serve --upstream URL --record DIR``: real answers for the client, every exchange kept,
no secret in the cassette, and every exchange with the upstream bounded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.recording.cassette import Cassette
from emulator.recording.recorder import RecorderOptions, create_recorder_app
from emulator.recording.upstream import Upstream, UpstreamError

from .conform_support import is_task_route, task_edit
from .record_support import SUBMISSIONS, Driver, lines, real_service, recorder, replaying, serving
from .served import ROOT, free_port

SECRET = "sk-live-SECRET-0123456789abcdef"
SIGNATURE = "sig-SECRET-4242"


def test_the_client_gets_the_upstream_answers_and_each_exchange_is_kept(tmp_path: Path) -> None:
    with serving(real_service()) as upstream, recorder(upstream, tmp_path) as proxy:
        driver = Driver(proxy)
        for body in SUBMISSIONS:
            driver.follow(body)
        driver.close()
    records = lines(tmp_path)
    assert records[0]["kind"] == "session" and records[0]["upstream"] == upstream
    exchanges = Cassette.load(tmp_path).exchanges
    assert len(exchanges) == len(driver.answers)
    cassette = Cassette.load(tmp_path)
    for exchange, (method, status, body, content_type) in zip(
        exchanges, driver.answers, strict=True
    ):
        assert (exchange.method, exchange.status) == (method, status)
        assert cassette.body(exchange.response_body) == body
        assert exchange.content_type == content_type
        assert exchange.request_headers["authorization"] == "Bearer ***"
    polls = [e for e in exchanges if e.kind == "poll"]
    assert all(e.task_id and e.path.endswith(e.task_id) for e in polls)


def _signed(task: dict[str, Any], scope: Any) -> None:
    """Result URLs signed like a CDN's, and the key echoed back in an answer."""
    urls = task.get("metadata", {}).get("result_urls") or []
    if task.get("result_url"):
        task["result_url"] += f"?X-Amz-Signature={SIGNATURE}&Expires=1700000000"
    task["metadata"]["result_urls"] = [f"{u}?sig={SIGNATURE}" for u in urls]
    task["echo"] = f"you sent {SECRET}"


def test_no_key_or_signature_reaches_the_cassette(tmp_path: Path) -> None:
    service = real_service(deviate=False, api_keys=(SECRET,))
    service.answer = task_edit(_signed, is_task_route)
    with serving(service) as upstream, recorder(upstream, tmp_path, record_results=True) as proxy:
        driver = Driver(proxy, key=SECRET)
        for body in SUBMISSIONS[:2]:
            driver.follow({**body, "api_key": SECRET})
        driver.http.get("/v1/images/tasks/task_unknown", params={"key": SECRET})
        driver.close()
    found = [
        path
        for path in tmp_path.rglob("*")
        if path.is_file()
        and (SECRET.encode() in path.read_bytes() or SIGNATURE.encode() in path.read_bytes())
    ]
    assert found == []
    text = (tmp_path / "cassette.jsonl").read_text()
    assert "X-Amz-Signature=***" in text and "key=***" in text and '"api_key":"***"' in text
    cassette = Cassette.load(tmp_path)
    pictures = [e for e in cassette.exchanges if e.kind == "result"]
    assert len(pictures) == 3 and all(e.status == 200 for e in pictures)
    assert all(cassette.body(e.response_body)[:4] in (b"\x89PNG", b"RIFF") for e in pictures)


def test_only_the_task_routes_are_forwarded(tmp_path: Path) -> None:
    seen: list[str] = []
    service = real_service(deviate=False)
    inner = service.app

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(f"{scope['method']} {scope['path']}")
        await inner(scope, receive, send)

    service.app = counting
    with serving(service) as upstream, recorder(upstream, tmp_path) as proxy:
        for method, path in (
            ("GET", "/_emulator/health"),
            ("POST", "/_emulator/reset"),
            ("DELETE", "/v1/images/tasks"),
            ("GET", "/openapi.json"),
        ):
            answer = httpx.request(method, proxy + path)
            assert answer.status_code == 404
            assert answer.json()["code"] == "not_forwarded"
            assert "forwards only POST /v1/images/tasks and GET" in answer.json()["message"]
        # A path ending in a newline is no route's (Python's "$" matched before it): never sent.
        answer = httpx.post(proxy + "/v1/images/tasks%0A", json={"model": "m", "prompt": "p"})
        assert (answer.status_code, answer.json()["code"]) == (404, "not_found")
    assert seen == []
    assert [r["kind"] for r in lines(tmp_path)] == ["session"]


def _mock(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def test_a_redirect_is_never_followed_to_another_host() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if request.url.host == "cdn.example":
            return httpx.Response(302, headers={"Location": "http://elsewhere.example/x.png"})
        return httpx.Response(200, content=b"never fetched")

    async def fetch() -> None:
        upstream = Upstream("http://relay.example", transport=_mock(handler))
        try:
            await upstream.fetch_result("http://cdn.example/x.png")
        finally:
            await upstream.aclose()

    import anyio

    with pytest.raises(UpstreamError, match=r"another host \(elsewhere.example\): not followed"):
        anyio.run(fetch)
    assert calls == ["http://cdn.example/x.png"]


def test_a_redirect_on_a_task_route_goes_back_to_the_client_unfollowed(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "https://evil.example/v1/images/tasks"})

    app = create_recorder_app(
        RecorderOptions("http://relay.example", tmp_path), transport=_mock(handler)
    )
    with serving(app) as proxy:
        answer = httpx.post(proxy + "/v1/images/tasks", json={"model": "x"})
    assert answer.status_code == 307
    assert answer.headers["location"] == "https://evil.example/v1/images/tasks"
    [exchange] = Cassette.load(tmp_path).exchanges
    assert exchange.status == 307


def test_an_answer_over_the_size_limit_is_not_read_and_is_a_502(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{" + b" " * 5000 + b"}")

    options = RecorderOptions("http://relay.example", tmp_path, max_answer_bytes=1000)
    with serving(create_recorder_app(options, transport=_mock(handler))) as proxy:
        answer = httpx.get(proxy + "/v1/images/tasks/task_1", headers={"Authorization": "Bearer k"})
    assert answer.status_code == 502
    assert answer.json()["code"] == "upstream_unavailable"
    assert "larger than 1000 bytes" in answer.json()["message"]
    assert answer.json()["message"].startswith("the upstream service answered 200, but")
    [exchange] = Cassette.load(tmp_path).exchanges
    assert exchange.status is None and "larger than 1000 bytes" in (exchange.error or "")
    assert exchange.upstream_status == 200  # the cassette keeps that the upstream answered
    with replaying(tmp_path) as url:
        again = httpx.get(url + "/v1/images/tasks/task_1", headers={"Authorization": "Bearer k"})
    assert (again.status_code, again.json()["code"]) == (502, "recorded_no_answer")
    assert "the upstream answered 200, but the answer is larger than" in again.json()["message"]


def test_an_exchange_is_bounded_in_total_not_per_read(tmp_path: Path) -> None:
    # httpx's timeout bounds each read: an upstream trickling a byte every 50 ms held an
    # exchange as long as it liked. The timeout bounds the whole exchange.
    async def trickle() -> Any:
        import anyio

        yield b'{"task_id":"task_1"'
        for _ in range(40):  # 2 s in all, each read well within the timeout
            await anyio.sleep(0.05)
            yield b" "
        yield b"}"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=trickle())

    options = RecorderOptions("http://relay.example", tmp_path, timeout=0.4)
    with serving(create_recorder_app(options, transport=_mock(handler))) as proxy:
        answer = httpx.post(proxy + "/v1/images/tasks", json={"prompt": "p"})
    assert (answer.status_code, answer.json()["code"]) == (502, "upstream_unavailable")
    assert "took longer than the --upstream-timeout of 0.4 s" in answer.json()["message"]
    [exchange] = Cassette.load(tmp_path).exchanges
    assert (exchange.status, exchange.upstream_status) == (None, 200)
    assert "--upstream-timeout of 0.4 s" in (exchange.error or "")


def test_a_picture_download_and_its_redirects_share_one_upstream_timeout() -> None:
    # Each hop answers well within the timeout; the four of them together do not. The timeout
    # bounded each hop alone, so a download could take four times the documented bound.
    calls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        import anyio

        calls.append(request.url.path)
        await anyio.sleep(0.3)
        hop = len(calls)
        if hop <= 3:
            return httpx.Response(302, headers={"Location": f"/x{hop}.png"})
        return httpx.Response(200, content=b"picture")

    async def fetch() -> None:
        upstream = Upstream("http://relay.example", timeout=0.5, transport=_mock(handler))
        try:
            await upstream.fetch_result("http://cdn.example/x.png")
        finally:
            await upstream.aclose()

    import anyio

    with pytest.raises(UpstreamError, match=r"longer than the --upstream-timeout of 0.5 s"):
        anyio.run(fetch)
    assert len(calls) == 2  # the second hop was cut at the shared deadline


def test_a_body_over_the_limit_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []
    options = RecorderOptions("http://relay.example", tmp_path, max_body_bytes=2048)
    app = create_recorder_app(
        options, transport=_mock(lambda r: calls.append(r) or httpx.Response(200))
    )
    with serving(app) as proxy:
        answer = httpx.post(proxy + "/v1/images/tasks", content=b"x" * 4096)
    assert answer.status_code == 413 and calls == []


def test_an_unreachable_upstream_is_a_502_that_says_so(tmp_path: Path) -> None:
    with recorder(f"http://127.0.0.1:{free_port()}", tmp_path, timeout=5) as proxy:
        answer = httpx.get(proxy + "/v1/images/tasks/task_1", headers={"Authorization": "Bearer k"})
    assert answer.status_code == 502
    assert answer.json()["message"].startswith("the upstream service did not answer: ConnectError")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://relay.example", "must be an http(s) URL"),
        ("https://user:pw@relay.example", "must not carry credentials"),
        ("https://relay.example/?key=1", "must not have a query"),
        ("https://relay.example:99999", "is not a URL"),
    ],
)
def test_an_upstream_url_that_could_leak_or_mislead_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        Upstream(url)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")},
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["serve", "--record", "d"], "recording needs both --upstream URL and --record DIR"),
        (["serve", "--replay", "d", "--record", "d"], "takes no --upstream or --record"),
        (["serve", "--replay", "d", "--clock", "manual"], "--clock set(s) the emulator"),
        (["serve", "--upstream", "https://a@b", "--record", "d"], "must not carry credentials"),
        (["serve", "--replay", "/nonexistent"], "holds no cassette"),
    ],
)
def test_serve_refuses_recording_flags_that_cannot_work(args: list[str], said: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert said in done.stderr


def test_serve_record_binds_loopback_by_default_and_records(tmp_path: Path) -> None:
    port = free_port()
    with serving(real_service(deviate=False)) as upstream:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emulator",
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--upstream",
                upstream,
                "--record",
                str(tmp_path),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:  # readiness, bounded
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/_recording/health", timeout=1)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.05)
            assert health.json() == {"status": "ok", "mode": "record", "upstream": upstream}
            driver = Driver(f"http://127.0.0.1:{port}")
            driver.follow(SUBMISSIONS[0])
            driver.close()
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    assert f"recording {upstream} into {tmp_path} on http://127.0.0.1:{port}" in err
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "cassette.jsonl").open()]
    assert kinds[0] == "session" and kinds.count("submit") == 1 and kinds.count("poll") >= 2


def test_a_head_request_is_forwarded_but_not_kept_as_a_poll(tmp_path: Path) -> None:
    with serving(real_service(deviate=False)) as upstream, recorder(upstream, tmp_path) as proxy:
        driver = Driver(proxy)
        task_id = driver.follow(SUBMISSIONS[0])
        head = driver.http.head(f"/v1/images/tasks/{task_id}")
        driver.close()
    assert head.status_code == 200
    polls = [e for e in Cassette.load(tmp_path).exchanges if e.kind == "poll"]
    assert [e.method for e in polls] == ["GET"] * len(polls)


def test_a_header_value_that_is_not_latin_1_is_handed_on_and_replayed(tmp_path: Path) -> None:
    # "x-note: 日本" in UTF-8 made the recorder answer 500 after the paid submission had reached
    # the upstream: the client never learnt its task id. A kept one 500ed on replay too.
    def handler(request: httpx.Request) -> httpx.Response:
        headers = [(b"content-type", b"application/json")]
        if request.method == "POST":
            headers += [(b"x-note", "日本".encode()), (b"x-ratelimit-note", "日本".encode())]
        else:
            headers += [(b"x-ratelimit-legacy", b"caf\xe9")]  # Latin-1: not UTF-8, not kept
        return httpx.Response(200, headers=headers, content=b'{"task_id":"task_1"}')

    app = create_recorder_app(
        RecorderOptions("http://relay.example", tmp_path), transport=_mock(handler)
    )
    keyed = {"Authorization": "Bearer sk-unicode"}
    with serving(app) as proxy:
        answer = httpx.post(proxy + "/v1/images/tasks", json={"prompt": "p"}, headers=keyed)
        polled = httpx.get(proxy + "/v1/images/tasks/task_1", headers=keyed)
    assert (answer.status_code, answer.json()) == (200, {"task_id": "task_1"})
    assert dict(answer.headers.raw)[b"x-note"] == "日本".encode()
    assert dict(polled.headers.raw)[b"x-ratelimit-legacy"] == b"caf\xe9"
    submitted, poll = Cassette.load(tmp_path).exchanges
    assert submitted.response_headers["x-ratelimit-note"] == "日本"
    assert "x-ratelimit-legacy" not in poll.response_headers
    assert poll.notes == (
        "response header x-ratelimit-legacy: its value is not UTF-8 text; not kept",
    )
    with replaying(tmp_path) as url:
        again = httpx.post(url + "/v1/images/tasks", json={"prompt": "p"}, headers=keyed)
    assert (again.status_code, again.content) == (200, answer.content)
    assert dict(again.headers.raw)[b"x-ratelimit-note"] == "日本".encode()


@pytest.mark.parametrize("task_id", ["a%1Eb", "a%00", "a%7F", "%C2%85x"])
def test_a_poll_of_an_id_with_a_control_character_is_a_404_never_forwarded(
    tmp_path: Path, task_id: str
) -> None:
    # httpx cannot put such an id in a URL: the recorder answered 500 (InvalidURL uncaught).
    calls: list[httpx.Request] = []
    app = create_recorder_app(
        RecorderOptions("http://relay.example", tmp_path),
        transport=_mock(lambda r: calls.append(r) or httpx.Response(200)),
    )
    with serving(app) as proxy:
        answer = httpx.get(
            f"{proxy}/v1/images/tasks/{task_id}", headers={"Authorization": "Bearer k"}
        )
    assert (answer.status_code, answer.json()["code"]) == (404, "not_forwarded")
    assert "a task id has no control characters" in answer.json()["message"]
    assert calls == [] and [r["kind"] for r in lines(tmp_path)] == ["session"]
