"""The fixture's handle refuses bad steering like the control plane does, and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulator import Settings, create_app
from emulator.errors import EmulatorError
from emulator.testing.app_loop import AppLoop
from emulator.testing.handle import ImageEmulator
from emulator.testing.transport import ASGITransport

NANO = {"model": "NanoBanana", "prompt": "x"}


def submit(handle: ImageEmulator) -> str:
    task_id: str = handle.client().post("/v1/images/tasks", json=NANO).json()["data"]["task_id"]
    return task_id


@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda h: h.advance(-1), ["seconds", "between 0 and 1e9"]),
        (lambda h: h.advance(float("nan")), ["seconds"]),
        (lambda h: h.advance("5"), ["seconds"]),
        (lambda h: h.set_balance(-1), ["amount", ">= 0"]),
        (lambda h: h.set_balance(True), ["amount"]),
        (lambda h: h.configure(seed=5), ["'seed'", "cannot change"]),
        (lambda h: h.configure(envelope="naked"), ["envelope"]),
        (lambda h: h.configure(colour="red"), ["colour"]),
        (lambda h: h.faults.add("explode"), ["kind"]),
        (lambda h: h.faults.add("drop", planet="mars"), ["planet"]),
        (lambda h: h.faults.add("drop", times=0), ["times"]),
        (lambda h: h.requests(model="X"), ["'model'", "body="]),
        (lambda h: h.requests(status="teapot"), ["status"]),
        (lambda h: h.requests(body={"prompt": "p" * 300}), ["200 characters"]),
        (lambda h: h.fail("task_x", code=5), ["code"]),
    ],
)
def test_bad_arguments_are_value_errors_naming_them(
    handle: ImageEmulator, call: object, names: list[str]
) -> None:
    task_id = submit(handle)
    with pytest.raises(ValueError) as raised:
        call(handle)  # type: ignore[operator]
    assert isinstance(raised.value, EmulatorError)
    for name in names:
        assert name in str(raised.value)
    # Nothing changed: the same one task, no rule, the settings of the start.
    assert [v["task"]["task_id"] for v in handle.tasks] == [task_id]
    assert list(handle.faults) == [] and handle.advance(0) == 0.0
    assert handle.emulator.settings.envelope == "wrapped"


@pytest.mark.parametrize(
    ("call", "field", "needle"),
    [
        # An empty code or message would have become the default, silently.
        (lambda h, t: h.fail(t, code=""), "code", "code must not be empty; leave it out"),
        (lambda h, t: h.fail(t, message=""), "message", "message must not be empty"),
        (lambda h, t: h.configure(failure_rate=2), "failure_rate", "between 0 and 1"),
        (lambda h, t: h.configure(bogus=1), "bogus", "unknown setting 'bogus'"),
        (lambda h, t: h.configure(envelop="bare"), "envelop", "did you mean 'envelope'?"),
        (lambda h, t: h.configure(envelope="naked"), "envelope", "'envelope'"),
        (lambda h, t: h.faults.add("dorp"), "fault.effect.kind", "kind must be one of"),
    ],
)
def test_a_refusal_names_the_field_at_fault(
    handle: ImageEmulator, call: Any, field: str, needle: str
) -> None:
    task_id = submit(handle)
    with pytest.raises(EmulatorError) as raised:
        call(handle, task_id)
    assert (raised.value.field, raised.value.status_code) == (field, 400)
    assert needle in raised.value.message
    assert handle.tasks[0]["status"] == "queued" and list(handle.faults) == []


def test_refusals_carry_the_control_planes_code(handle: ImageEmulator) -> None:
    task_id = submit(handle)
    handle.finish(task_id)
    with pytest.raises(EmulatorError) as ended:
        handle.fail(task_id)
    assert (ended.value.status_code, ended.value.code) == (409, "task_already_ended")
    with pytest.raises(EmulatorError) as missing:
        handle.finish("task_" + "0" * 32)
    assert missing.value.status_code == 404
    added = handle.faults.add("drop", id="r")
    added.remove()
    with pytest.raises(EmulatorError) as gone:
        added.remove()
    assert (gone.value.status_code, gone.value.code) == (404, "not_found")
    assert handle.tasks[0]["status"] == "succeeded"


def test_advance_needs_the_manual_clock() -> None:
    app = create_app(Settings(seed=1, clock="per_poll"))
    loop = AppLoop()
    handle = ImageEmulator(app, loop, "http://image-emulator.test", in_process=True)
    try:
        with pytest.raises(EmulatorError) as refused:
            handle.advance(1)
        assert refused.value.code == "clock_not_manual"
    finally:
        loop.close(last=app.state.emulator.store.close())


def test_a_list_body_filter_longer_than_a_kept_text_still_matches(handle: ImageEmulator) -> None:
    # The journal keeps each URL (under 200 characters) and so the whole list: a filter on it is
    # not refused as "can never match" because its JSON text is long.
    urls = [f"https://example.com/{i}/" + "p" * 90 + ".png" for i in range(3)]
    handle.client().post("/v1/images/tasks", json=NANO | {"images": urls})
    handle.client().post("/v1/images/tasks", json=NANO)
    [entry] = handle.requests(body={"images": urls})
    assert entry["body"]["fields"]["images"] == urls
    handle.assert_requested(times=0, body={"images": urls[:2]})


def test_an_in_process_answer_is_read_like_one_from_the_network(handle: ImageEmulator) -> None:
    """The body, its Content-Length and the time it took, as a real server's answer has them
    (``response.elapsed`` raised before: the answer was read before the client timed it)."""
    with handle.client() as client:
        answer = client.post("/v1/images/tasks", json=NANO)
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(len(answer.content))
        assert answer.json()["data"]["task_id"]
        assert answer.elapsed.total_seconds() >= 0
        assert answer.is_closed


def test_the_transport_adds_a_content_length_only_where_the_app_sent_none() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        named = [(b"Content-Length", b"2")] if scope["path"] == "/with" else []
        await send({"type": "http.response.start", "status": 200, "headers": named})
        await send({"type": "http.response.body", "body": b"ok"})

    transport = ASGITransport(app)
    try:
        with httpx.Client(transport=transport, base_url="http://app.test") as client:
            for path in ("/with", "/without"):
                answer = client.get(path)
                assert answer.headers.get_list("content-length") == ["2"]
                assert answer.content == b"ok"
    finally:
        transport.close()


def test_configure_shows_the_seed_in_use_as_the_control_plane_does() -> None:
    # No seed set: one is drawn at start. GET /_emulator/config shows it; the handle's
    # configure() showed null.
    app = create_app(Settings(clock="manual"))
    loop = AppLoop()
    handle = ImageEmulator(app, loop, "http://image-emulator.test", in_process=True)
    try:
        shown = handle.configure(failure_rate=0.0)["seed"]
        assert isinstance(shown, int)
        assert shown == handle.control("GET", "/_emulator/config")["seed"]
    finally:
        handle.close()
        loop.close(last=app.state.emulator.store.close())
