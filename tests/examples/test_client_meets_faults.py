"""The obvious client against every fault effect, on a live server and the manual clock.

The client's ``sleep`` moves the emulator's clock, so a run that "waits" minutes of polling
takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ..conftest import LiveServer
from .image_client import GaveUp, ImageTaskClient, TaskFailed

PAYLOAD = {"model": "gpt-image-2", "prompt": "a red cube", "size": "1024x1024", "n": 3}


@pytest.fixture
def server(live: Callable[..., LiveServer]) -> LiveServer:
    return live(hang_max_seconds=5)


def client_for(server: LiveServer, timeout: float = 5.0) -> ImageTaskClient:
    admin = httpx.Client(base_url=server.base_url)

    def advance(seconds: float) -> None:
        admin.post("/_emulator/clock/advance", json={"seconds": seconds}).raise_for_status()

    return ImageTaskClient(server.base_url, "sk-example", sleep=advance, timeout=timeout)


def fault(server: LiveServer, rule: dict[str, Any]) -> None:
    httpx.post(f"{server.base_url}/_emulator/faults", json=rule).raise_for_status()


def test_happy_path_downloads_every_image(server: LiveServer) -> None:
    images = client_for(server).generate(PAYLOAD)
    assert len(images) == 3 and all(img.startswith(b"\x89PNG") for img in images)


def test_upstream_failure_surfaces_its_code(server: LiveServer) -> None:
    fault(
        server,
        {"effect": {"kind": "fail_task", "code": "content_policy_violation", "at_progress": 30}},
    )
    with pytest.raises(TaskFailed) as failed:
        client_for(server).generate(PAYLOAD)
    assert failed.value.code == "content_policy_violation"


def test_partial_result_gives_fewer_images(server: LiveServer) -> None:
    fault(server, {"effect": {"kind": "partial", "images": 1}})
    assert len(client_for(server).generate(PAYLOAD)) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_http_errors_are_retried(server: LiveServer, status: int) -> None:
    fault(
        server,
        {
            "match": {"endpoint": "poll"},
            "effect": {"kind": "http_error", "status": status},
            "times": 2,
        },
    )
    client = client_for(server)
    assert len(client.generate(PAYLOAD)) == 3
    assert client.retries == 2


def test_rate_limit_then_success_honours_retry_after(server: LiveServer) -> None:
    fault(
        server,
        {
            "match": {"endpoint": "submit"},
            "effect": {"kind": "http_error", "status": 429, "retry_after": 30},
            "times": 1,
        },
    )
    client = client_for(server)
    client.generate(PAYLOAD)
    clock = httpx.get(f"{server.base_url}/_emulator/clock").json()["now"]
    assert clock >= 30  # the client waited (virtually) as long as it was told


def test_dropped_connection_is_retried(server: LiveServer) -> None:
    fault(server, {"match": {"endpoint": "poll"}, "effect": "drop", "times": 1})
    client = client_for(server)
    assert len(client.generate(PAYLOAD)) == 3
    assert client.retries == 1


def test_dropped_connection_is_seen_by_a_raw_client(server: LiveServer) -> None:
    fault(server, {"effect": "drop"})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            f"{server.base_url}/v1/images/tasks",
            json=PAYLOAD,
            headers={"Authorization": "Bearer k"},
        )


def test_hung_poll_times_out_and_is_retried(server: LiveServer) -> None:
    fault(server, {"match": {"endpoint": "poll"}, "effect": "hang", "times": 1})
    client = client_for(server, timeout=0.2)
    assert len(client.generate(PAYLOAD)) == 3
    assert client.retries == 1


def test_hang_is_released_at_its_cap(server: LiveServer) -> None:
    fault(server, {"effect": {"kind": "hang", "seconds": 0.05}})
    response = httpx.post(
        f"{server.base_url}/v1/images/tasks",
        json=PAYLOAD,
        headers={"Authorization": "Bearer k"},
        timeout=5,
    )
    assert response.status_code == 200


@pytest.mark.parametrize("kind", ["malformed", "empty"])
def test_broken_poll_bodies_are_retried(server: LiveServer, kind: str) -> None:
    fault(server, {"match": {"endpoint": "poll"}, "effect": kind, "times": 1})
    client = client_for(server)
    assert len(client.generate(PAYLOAD)) == 3
    assert client.retries == 1


def test_malformed_body_is_not_json_on_the_wire(server: LiveServer) -> None:
    fault(server, {"effect": "malformed"})
    response = httpx.post(
        f"{server.base_url}/v1/images/tasks", json=PAYLOAD, headers={"Authorization": "Bearer k"}
    )
    with pytest.raises(ValueError):
        response.json()


def test_added_latency_is_felt(server: LiveServer) -> None:
    fault(server, {"effect": {"kind": "latency", "seconds": 0.05}, "times": 1})
    response = httpx.post(
        f"{server.base_url}/v1/images/tasks", json=PAYLOAD, headers={"Authorization": "Bearer k"}
    )
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.05


def test_persistent_errors_make_the_client_give_up(server: LiveServer) -> None:
    fault(server, {"effect": {"kind": "http_error", "status": 503}})
    with pytest.raises(GaveUp):
        client_for(server).generate(PAYLOAD)
