"""`python -m emulator conform` catches drift: each deviating server differs from the contract in
one way, and the command fails naming that deviation.

A deviating server is the real emulator behind a tiny ASGI middleware that changes one thing,
served by uvicorn on a free loopback port in a thread and stopped after the test.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator import Settings, create_app
from emulator.cli import main
from emulator.conform import EXIT_DEVIATIONS, EXIT_NOT_CONFIGURED, EXIT_OK
from emulator.contract import contract_path

KEY = "sk-drift"
#: Answer = (status, headers, body); a mutation returns the changed answer.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
Mutation = Callable[[Scope, bytes, Answer], Answer]
RequestEdit = Callable[[Scope, bytes], bytes]


class Deviate:
    """ASGI middleware: optionally edits the request body, then the buffered answer."""

    def __init__(
        self, app: ASGIApp, answer: Mutation | None = None, request: RequestEdit | None = None
    ) -> None:
        self.app, self.answer, self.request = app, answer, request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if self.request is not None:
            body = self.request(scope, body)
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            scope = dict(scope, headers=[*headers, (b"content-length", str(len(body)).encode())])
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, replay, capture)
        status, headers, out = start["status"], list(start.get("headers", [])), b"".join(chunks)
        if self.answer is not None:
            status, headers, out = self.answer(scope, body, (status, headers, out))
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(out)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})


class Served:
    """An ASGI app on a free 127.0.0.1 port, in a thread of this process."""

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:  # readiness, bounded: not a timing assumption
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Serve the emulator behind one deviation; returns its base URL. Stopped after the test."""
    running: list[Served] = []

    def start(answer: Mutation | None = None, request: RequestEdit | None = None) -> str:
        app = create_app(Settings(seed=7, api_keys=(KEY,)))
        served = Served(Deviate(app, answer, request))
        running.append(served)
        return served.base_url

    yield start
    for served in running:
        served.stop()


def conform(capsys: pytest.CaptureFixture[str], base_url: str, *extra: str) -> tuple[int, str]:
    code = main(
        [
            "conform",
            "--base-url",
            base_url,
            "--api-key",
            KEY,
            "--seed",
            "3",
            "--rate-limit",
            "",
            *extra,
        ]
    )
    return code, capsys.readouterr().out


#: Negative data, submissions and every check, but few examples and no stateful phase: each
#: deviation below shows up in the first requests of these phases.
FAST_FULL = ("--full", "--max-examples", "4", "--phases", "examples,coverage")


def _json_task_edit(edit: Callable[[dict[str, Any]], None]) -> Mutation:
    """Apply ``edit`` to the task object of every successful task-route answer."""

    def mutate(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, body = answer
        if status in (200, 202) and scope["path"].startswith("/v1/images/tasks"):
            data = json.loads(body)
            edit(data.get("data", data))
            body = json.dumps(data).encode()
        return status, headers, body

    return mutate


def _section(output: str, check: str) -> str:
    match = re.search(rf"^== {check}\n(.*?)(?=^== |\Z)", output, re.S | re.M)
    assert match, f"{check} not reported:\n{output}"
    return match.group(1)


# -- the command -----------------------------------------------------------------------------------
def test_without_a_base_url_conform_says_what_to_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGE_API_BASE_URL", raising=False)
    assert main(["conform"]) == EXIT_NOT_CONFIGURED
    out = capsys.readouterr().out
    assert "IMAGE_API_BASE_URL" in out and "IMAGE_API_KEY" in out


def test_faithful_server_passes_and_the_report_is_written(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    code, out = conform(capsys, serve(), *FAST_FULL, "--report", str(tmp_path))
    assert code == EXIT_OK, out
    assert "no deviations" in out
    assert "<testsuite" in (tmp_path / "junit.xml").read_text()
    assert "no deviations" in (tmp_path / "summary.txt").read_text()


# -- drift ----------------------------------------------------------------------------------------
def test_status_vocabulary_drift_is_named(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(_json_task_edit(lambda t: t.update(status="pending")))
    code, out = conform(capsys, url, *FAST_FULL)
    assert code == EXIT_DEVIATIONS, out
    section = _section(out, "response_schema_conformance")
    assert "POST /v1/images/tasks" in section
    assert "status: 'pending' is not one of ['queued', 'processing'" in section


def test_progress_as_a_number_is_named(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(_json_task_edit(lambda t: t.update(progress=0)))
    code, out = conform(capsys, url, *FAST_FULL)
    assert code == EXIT_DEVIATIONS, out
    assert "progress: 0 is not of type 'string'" in _section(out, "response_schema_conformance")


def test_missing_required_field_is_named(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(_json_task_edit(lambda t: t.pop("metadata")))
    code, out = conform(capsys, url, *FAST_FULL)
    assert code == EXIT_DEVIATIONS, out
    assert "'metadata' is a required property" in _section(out, "response_schema_conformance")


def test_envelope_mismatch_is_named(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    def rename(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, body = answer
        if status == 200 and scope["path"].startswith("/v1/"):
            data = json.loads(body)
            body = json.dumps({"code": 0, "msg": "ok", "result": data["data"]}).encode()
        return status, headers, body

    code, out = conform(capsys, serve(rename), *FAST_FULL)
    assert code == EXIT_DEVIATIONS, out
    section = _section(out, "response_schema_conformance")
    assert "POST /v1/images/tasks" in section
    assert "as TaskEnvelope" in section and "'data' is a required property" in section


def test_server_error_on_bad_input_is_named(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, _ = answer
        return (500, headers, b'{"error": "boom"}') if status == 400 else answer

    code, out = conform(capsys, serve(crash), *FAST_FULL)
    assert code == EXIT_DEVIATIONS, out
    section = _section(out, "not_a_server_error")
    assert "POST /v1/images/tasks" in section and "response: 500" in section


def test_accepting_an_invalid_size_is_named(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    from emulator.catalogue import Catalogue

    sizes = Catalogue.load().gpt_sizes

    def lenient(scope: Scope, body: bytes) -> bytes:
        # The deviation: any gpt-image-2 size is taken (quietly replaced by a supported one).
        try:
            data = json.loads(body)
        except ValueError:
            return body
        if isinstance(data, dict) and data.get("model") == "gpt-image-2":
            if data.get("size") not in sizes:
                data["size"] = "1024x1024"
            return json.dumps(data).encode()
        return body

    code, out = conform(capsys, serve(request=lenient), *FAST_FULL)
    assert code == EXIT_DEVIATIONS, out
    section = _section(out, "negative_data_rejection")
    assert "POST /v1/images/tasks" in section and "size" in section


def test_wrong_image_content_type_is_named(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (4, 4)).save(picture, "PNG")

    def gif_label(scope: Scope, request: bytes, answer: Answer) -> Answer:
        # Every result URL serves a picture, labelled with a type the contract does not list.
        if scope["path"].startswith("/_emulator/results/"):
            return 200, [(b"content-type", b"image/gif")], picture.getvalue()
        return answer

    contract = str(contract_path("emulator"))
    code, out = conform(
        capsys,
        serve(gif_label),
        "--contract",
        contract,
        "--max-examples",
        "3",
        "--phases",
        "examples,fuzzing",
    )
    assert code == EXIT_DEVIATIONS, out
    section = _section(out, "content_type_conformance")
    assert "GET /_emulator/results/{task_id}/{token}/{index}.{ext}" in section
    assert "image/gif" in section


# -- safe defaults against a live service ---------------------------------------------------------
def test_default_run_against_a_live_service_only_reads(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve()
    code, out = conform(capsys, url, "--max-examples", "3")
    assert code == EXIT_OK, out
    assert "GET only" in out
    journal = httpx.get(f"{url}/_emulator/requests").json()["requests"]
    assert journal and {entry["method"] for entry in journal} == {"GET"}


def test_generation_run_creates_at_most_max_tasks_of_the_cheapest_model(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve()
    code, out = conform(capsys, url, "--allow-generation", "--max-tasks", "2")
    assert code == EXIT_OK, out
    tasks = httpx.get(f"{url}/_emulator/tasks").json()["tasks"]
    assert len(tasks) == 2
    assert {(t["task"]["model"], t["task"]["n"]) for t in tasks} == {("NanoBanana2-0.5K", 1)}
    assert "beyond the cap of 2" in out


def test_a_401_without_the_openai_style_body_is_named(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    def relay_body(scope: Scope, request: bytes, answer: Answer) -> Answer:
        status, headers, _ = answer
        if status == 401:
            return status, headers, b'{"code": "unauthorized", "message": "no key", "data": null}'
        return answer

    code, out = conform(capsys, serve(relay_body), *FAST_FULL)
    assert code == EXIT_DEVIATIONS, out
    section = _section(out, "response_schema_conformance")
    assert '"error" is a required property' in section and "response: 401" in section
