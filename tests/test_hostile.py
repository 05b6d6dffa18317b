"""The hostile-input corpus (fixtures/hostile/) and connection-level abuse of a live server.

Every hostile request gets its documented 4xx with a message naming the problem, and the
emulator stays healthy: health, the journal and an ordinary submission still work after it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Settings, create_app

from .conftest import Client

HOSTILE = Path(__file__).parent.parent / "fixtures" / "hostile"
KEY_HEADER = {"Authorization": "Bearer sk-hostile"}
ORDINARY = {"model": "NanoBanana", "prompt": "still standing"}


def _cases() -> list[Any]:
    params = []
    for path in sorted(HOSTILE.glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")):
            params.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return params


CASES = _cases()


def _expand(value: Any) -> Any:
    """The corpus' two macros: {"$repeat": s, "times": n} and {"$nest": n}."""
    if isinstance(value, dict):
        if "$repeat" in value:
            return value["$repeat"] * value["times"]
        if "$nest" in value:
            nested: dict[str, Any] = {}
            for _ in range(value["$nest"]):
                nested = {"a": nested}
            return nested
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _send(client: Client, request: dict[str, Any]) -> Any:
    headers: dict[str, Any] = dict(KEY_HEADER)
    headers.update(request.get("headers", {}))
    kwargs: dict[str, Any] = {}
    if "json" in request:
        kwargs["content"] = json.dumps(_expand(request["json"]), ensure_ascii=False).encode()
        headers.setdefault("Content-Type", "application/json")
    elif "text" in request:
        kwargs["content"] = request["text"].encode("utf-8")
    elif "base64" in request:
        kwargs["content"] = base64.b64decode(request["base64"])
    elif "repeat" in request:
        kwargs["content"] = (request["repeat"]["text"] * request["repeat"]["times"]).encode()
    elif "multipart" in request:
        form: dict[str, list[str]] = {}
        for name, value in request["multipart"]["fields"]:
            form.setdefault(name, []).append(value)
        kwargs["data"] = form
        kwargs["files"] = [
            (
                f["name"],
                (
                    f["filename"],
                    base64.b64decode(f["base64"]) if "base64" in f else f["text"].encode(),
                    f["type"],
                ),
            )
            for f in request["multipart"]["files"]
        ]
    # A header set to null is removed (httpx would send the client's default otherwise).
    removed = [name for name, value in headers.items() if value is None]
    for name in removed:
        del headers[name]
    if "Authorization" in removed:
        client.headers.pop("Authorization", None)
    return client.request(
        request.get("method", "POST"),
        request.get("path", "/v1/images/tasks"),
        headers=headers,
        **kwargs,
    )


#: Reads that a hostile request must leave answering 200.
STANDING = (
    "/_emulator/health",
    "/_emulator/requests",
    "/_emulator/config",
    "/_emulator/faults",
    "/_emulator/tasks",
    "/_emulator/clock",
    "/_emulator/usage",
    "/_emulator/balances",
)


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    if isinstance(body, dict):
        return str(body.get("message", ""))
    return ""


@pytest.fixture
def hostile_client() -> Iterator[Any]:
    clients: list[Client] = []

    def make(**overrides: Any) -> Client:
        settings = Settings(seed=99, clock="manual").replace(**overrides)
        client = Client(create_app(settings))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize("case", CASES)
def test_hostile_request_gets_its_answer_and_leaves_the_emulator_healthy(
    hostile_client: Any, case: dict[str, Any]
) -> None:
    client = hostile_client(**case.get("settings", {}))
    expect = case["expect"]
    request = dict(case["request"])
    task_id = None
    if "{task}" in request.get("path", ""):
        # A control-plane route about a task: one exists first (and is polled afterwards).
        task_id = client.post("/v1/images/tasks", json=ORDINARY, headers=KEY_HEADER).json()
        task_id = task_id["data"]["task_id"]
        request["path"] = request["path"].replace("{task}", task_id)
    response = _send(client, request)
    assert response.status_code == expect["status"], response.text[:500]
    if response.status_code >= 400:
        message = _message(response.json())
        assert message, "an error answer must carry a message"
        if "message" in expect:
            assert expect["message"].lower() in message.lower()
        if "field" in expect:
            assert expect["field"] in message
    if case.get("download"):
        task = response.json()["data"]
        client.post("/_emulator/clock/advance", json={"seconds": 10_000})
        polled = client.get(f"/v1/images/tasks/{task['task_id']}", headers=KEY_HEADER).json()
        assert polled["data"]["status"] == "succeeded"
        picture = client.get(polled["data"]["result_url"])
        assert picture.status_code == 200
        assert picture.headers["content-type"].startswith("image/")
    # Still standing, and nothing poisoned: every read of the control plane, an ordinary
    # submission, its poll, and the polls of a task the case was about.
    for path in STANDING:
        assert client.get(path).status_code == 200, (path, client.get(path).text[:300])
    submitted = client.post("/v1/images/tasks", json=ORDINARY, headers=KEY_HEADER)
    assert submitted.status_code == 200, submitted.text[:300]
    for polled in (submitted.json()["data"]["task_id"], task_id):
        if polled is not None:
            poll = client.get(f"/v1/images/tasks/{polled}", headers=KEY_HEADER)
            assert poll.status_code == 200, poll.text[:300]
    assert client.post("/_emulator/clock/advance", json={"seconds": 10_000}).status_code == 200
    assert client.get("/_emulator/tasks").status_code == 200


def test_corpus_is_dozens_of_cases_across_every_category() -> None:
    categories = {path.stem for path in HOSTILE.glob("*.json")}
    assert {
        "json-types",
        "json-bodies",
        "models",
        "multipart",
        "headers",
        "paths",
        "control-plane",
    } <= categories
    assert len(CASES) >= 60


# -- connection-level abuse: a real uvicorn server ------------------------------------------


def _raw(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes or stops talking (bounded by a timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    line = answer.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


RAW_CASES = {
    "request line of garbage": b"HELLO THERE\r\n\r\n",
    "header of 100 kB": b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"a" * 100_000
    + b"\r\n\r\n",
    "both Content-Length and chunked": b"POST /v1/images/tasks HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer sk-x\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"POST /v1/images/tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/json\r\nAuthorization: Bearer sk-x\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "declared 10 GB body": b"POST /v1/images/tasks HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 10000000000\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer sk-x\r\n\r\n{",
    "header without a colon": b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nbroken\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(RAW_CASES))
def test_connection_level_abuse_gets_a_4xx_and_the_server_stays_up(
    image_emulator_live: Any, name: str
) -> None:
    port = int(image_emulator_live.base_url.rsplit(":", 1)[1])
    answer = _raw(port, RAW_CASES[name])
    assert 400 <= _status(answer) < 500, answer[:200]
    health = _raw(port, b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _status(health) == 200


def test_headers_over_the_limit_get_a_431_naming_it(hostile_client: Any) -> None:
    client = hostile_client(max_header_bytes=2048)
    response = client.post(
        "/v1/images/tasks", json=ORDINARY, headers=KEY_HEADER | {"X-Padding": "p" * 3000}
    )
    assert response.status_code == 431
    assert "headers are larger than the limit of 2048 bytes" in response.json()["message"]
    assert client.post("/v1/images/tasks", json=ORDINARY, headers=KEY_HEADER).status_code == 200


def test_raw_non_utf8_query_is_journaled_not_a_500() -> None:
    app = create_app(Settings(seed=1, clock="manual"))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/images/tasks/task_00000000000000000000000000000000",
        "raw_path": b"/v1/images/tasks/task_00000000000000000000000000000000",
        "query_string": b"x=\xff\xfe",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"authorization", b"Bearer sk-raw")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 404


def _multipart(parts: list[tuple[str, str]]) -> tuple[bytes, dict[str, str]]:
    boundary = "BOUND"
    body = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in parts
    )
    return (body + f"--{boundary}--\r\n").encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"
    }


@pytest.mark.parametrize(
    "extra",
    [
        [("image_urls", "x"), ("image", "https://example.com/a.png")],
        [("image", "https://example.com/a.png"), ("image_urls", "x")],
        [("image_urls", "https://example.com/a.png")],
    ],
)
def test_a_multipart_field_named_like_our_internal_one_is_an_unknown_field(
    client: Client, extra: list[tuple[str, str]]
) -> None:
    # Text `image` parts are gathered under "image_urls" inside; a client's own part of that
    # name once crashed the parser (500) or was read letter by letter as picture URLs.
    base = [("model", "NanoBanana"), ("prompt", "a cat")]
    body, headers = _multipart(base + extra)
    response = client.post("/v1/images/tasks", content=body, headers=headers)
    with_picture = any(name == "image" for name, _ in extra)
    assert response.status_code == 200, response.text
    task = client.get(f"/_emulator/tasks/{response.json()['data']['task_id']}").json()["task"]
    assert task["task_type"] == ("image2image" if with_picture else "text2image")
    entry = client.get("/_emulator/requests").json()["requests"][-1]
    assert entry["unknown_fields"] == ["image_urls"]
