"""The two real endpoints end to end: envelopes, life cycle, clocks, auth, isolation."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema_rs import Draft202012Validator

from emulator.contract import load_contract
from emulator.core.keys import key_fingerprint
from emulator.core.tasks import Schedule, Task
from emulator.usecases.submission import FIELDS

from .conftest import AUTH, KEY, Client, png_bytes

FIXTURES = Path(__file__).parent.parent / "fixtures" / "requests"
EXAMPLES = sorted(FIXTURES.glob("*.json"))
EXPECTED = {
    "nano-text2image.json": ((512, 512), "PNG"),
    "nano-image2image.json": ((688, 384), "JPEG"),
    "gpt-text2image.json": ((1024, 768), "WEBP"),
    "gpt-image2image.json": ((1024, 1024), "PNG"),
}
NANO = {"model": "NanoBanana2-0.5K", "prompt": "x"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_reference_examples_succeed_with_the_right_image(make_client: Any, path: Path) -> None:
    client: Client = make_client(clock="real", time_scale=0)
    response = client.post(
        "/v1/images/tasks",
        content=path.read_bytes(),
        headers={"content-type": "application/json", "authorization": "Bearer anything"},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["status"], data["progress"], data["result_url"]) == ("queued", "0%", None)
    task = client.task(data["task_id"], headers={"authorization": "Bearer anything"})
    assert task["status"] == "succeeded"
    assert task["error"] is None
    img = client.image(task["result_url"])
    assert (img.size, img.format) == EXPECTED[path.name]


def test_submission_answers_the_queued_task_in_the_envelope(client: Client) -> None:
    body = client.submit(NANO).json()
    assert body["code"] == "success" and body["message"] == ""
    data = body["data"]
    assert data["task_id"].startswith("task_") and len(data["task_id"]) == 37
    assert data == {
        "task_id": data["task_id"],
        "status": "queued",
        "progress": "0%",
        "result_url": None,
        "metadata": {"task_type": "text2image", "result_count": 0},
        "error": None,
    }


def test_bare_envelope_returns_the_task_alone(make_client: Any) -> None:
    client = make_client(envelope="bare")
    body = client.submit(NANO).json()
    assert body["status"] == "queued" and "data" not in body
    assert client.get(f"/v1/images/tasks/{body['task_id']}").json()["task_id"] == body["task_id"]


def test_bare_envelope_keeps_the_error_envelope(make_client: Any) -> None:
    client = make_client(envelope="bare")
    assert client.submit({"model": "x"}).json()["data"] is None


def test_manual_clock_moves_only_when_advanced(client: Client) -> None:
    task_id = client.submit_ok({"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    seen = []
    for _ in range(200):
        task = client.task(task_id)
        seen.append((task["status"], int(task["progress"].rstrip("%"))))
        if task["status"] == "succeeded":
            break
        assert client.task(task_id) == task  # polling alone never moves the manual clock
        client.advance(0.5)
    statuses = [s for s, _ in seen]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    assert "processing" in statuses
    assert [p for _, p in seen] == sorted(p for _, p in seen)
    assert seen[-1][1] == 100


def test_per_poll_clock_moves_one_step_per_poll(make_client: Any) -> None:
    client = make_client(clock="per_poll", per_poll_steps=3)
    task_id = client.submit_ok(NANO)
    states = [(t["status"], t["progress"]) for t in (client.task(task_id) for _ in range(4))]
    assert states == [
        ("processing", "33%"),
        ("processing", "66%"),
        ("succeeded", "100%"),
        ("succeeded", "100%"),
    ]


def test_per_poll_clock_is_moved_only_by_the_owners_gets(make_client: Any) -> None:
    client = make_client(clock="per_poll", per_poll_steps=3)
    task_id = client.submit_ok(NANO)
    other = {"Authorization": "Bearer sk-someone-else"}
    for _ in range(3):
        assert client.get(f"/v1/images/tasks/{task_id}", headers=other).status_code == 404
        assert client.head(f"/v1/images/tasks/{task_id}").status_code == 200
    assert (client.task(task_id)["status"], client.task(task_id)["progress"]) == (
        "processing",
        "66%",
    )


def test_time_scale_zero_finishes_at_the_first_poll(make_client: Any) -> None:
    client = make_client(clock="real", time_scale=0)
    task_id = client.submit_ok(NANO)
    assert client.task(task_id)["status"] == "succeeded"


def test_succeeded_task_lists_one_url_unless_always_list_results(make_client: Any) -> None:
    task = make_client().run_to_end(NANO)
    assert "result_urls" not in task["metadata"]
    assert task["metadata"]["result_count"] == 1
    task = make_client(always_list_results=True).run_to_end(NANO)
    assert task["metadata"]["result_urls"] == [task["result_url"]]


def _task_response_errors(body: dict[str, Any]) -> list[str]:
    contract = load_contract()
    schema = {"$ref": "#/components/schemas/TaskResponse", "components": contract["components"]}
    return [error.message for error in Draft202012Validator(schema).iter_errors(body)]


@pytest.mark.parametrize("envelope", ["wrapped", "bare"])
def test_always_list_results_lists_them_once_there_are_results_and_obeys_the_contract(
    make_client: Any, envelope: str
) -> None:
    # D-3: result_urls lists the results when there are some; before success (and on failure)
    # there are none, and the contract wants at least one item whenever the member is present.
    client = make_client(always_list_results=True, envelope=envelope)
    submitted = client.submit(NANO)
    doomed = client.submit(NANO)
    bodies = [submitted.json(), doomed.json()]
    ids = [b["data"]["task_id"] if envelope == "wrapped" else b["task_id"] for b in bodies]
    client.advance(
        0.001 + client.get(f"/_emulator/tasks/{ids[0]}").json()["task"]["schedule"]["queued_s"]
    )
    bodies.append(client.get(f"/v1/images/tasks/{ids[0]}").json())  # processing
    client.post(f"/_emulator/tasks/{ids[1]}/outcome", json={"status": "failed"})
    bodies.append(client.get(f"/v1/images/tasks/{ids[1]}").json())  # failed
    client.advance(10_000)
    bodies.append(client.get(f"/v1/images/tasks/{ids[0]}").json())  # succeeded
    tasks = [b["data"] if envelope == "wrapped" else b for b in bodies]
    statuses = [t["status"] for t in tasks]
    assert statuses == ["queued", "queued", "processing", "failed", "succeeded"]
    for body, task in zip(bodies, tasks, strict=True):
        assert _task_response_errors(body) == [], task
        if task["status"] == "succeeded":
            assert task["metadata"]["result_urls"] == [task["result_url"]]
        else:
            assert "result_urls" not in task["metadata"], task


def test_public_base_url_is_used_for_results(make_client: Any) -> None:
    task = make_client(public_base_url="https://img.example.test/").run_to_end(NANO)
    assert task["result_url"].startswith("https://img.example.test/_emulator/results/task_")


def test_result_is_not_served_before_the_task_succeeds(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    token = client.get(f"/_emulator/tasks/{task_id}").json()["task"]["token"]
    response = client.get(f"/_emulator/results/{task_id}/{token}/0.png")
    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


def test_result_with_wrong_extension_or_index_is_404(client: Client) -> None:
    task = client.run_to_end(NANO)
    base = task["result_url"].rsplit("/", 1)[0]
    assert client.get(f"{base}/0.jpeg").status_code == 404
    assert client.get(f"{base}/1.png").status_code == 404
    assert client.get(f"{base}/../0.png").status_code == 404


def test_images_are_deterministic_for_the_same_seed(make_client: Any) -> None:
    first, second = make_client(seed=99), make_client(seed=99)
    a, b = first.run_to_end(NANO), second.run_to_end(NANO)
    assert a["task_id"] == b["task_id"]
    assert first.get(a["result_url"]).content == second.get(b["result_url"]).content
    other = make_client(seed=100).run_to_end(NANO)
    assert other["task_id"] != a["task_id"]


def test_missing_key_is_401_with_the_openai_body(client: Client) -> None:
    response = client.post("/v1/images/tasks", json=NANO, headers={"authorization": ""})
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"}
    assert error["code"] == "invalid_api_key"


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer   ", "token"])
def test_malformed_authorization_is_401(client: Client, header: str) -> None:
    response = client.get("/v1/images/tasks/task_" + "0" * 32, headers={"authorization": header})
    assert response.status_code == 401
    assert "error" in response.json()


def test_api_keys_setting_restricts_keys(make_client: Any) -> None:
    client = make_client(api_keys=("sk-good",))
    assert client.submit(NANO, headers={"authorization": "Bearer sk-bad"}).status_code == 401
    assert client.submit(NANO, headers={"authorization": "Bearer sk-good"}).status_code == 200


def test_task_is_invisible_to_another_key(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    other = client.get(f"/v1/images/tasks/{task_id}", headers={"authorization": "Bearer sk-other"})
    unknown = client.get("/v1/images/tasks/task_" + "f" * 32)
    assert other.status_code == unknown.status_code == 404
    assert other.json()["code"] == unknown.json()["code"] == "task_not_found"


@pytest.mark.parametrize("task_id", ["task_" + "0" * 32, "nope", "task_XYZ", "task_%2E%2E"])
def test_unknown_task_is_404(client: Client, task_id: str) -> None:
    response = client.get(f"/v1/images/tasks/{task_id}")
    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


def test_unknown_task_status_400_mimics_the_relay(make_client: Any) -> None:
    response = make_client(unknown_task_status=400).get("/v1/images/tasks/task_" + "0" * 32)
    assert response.status_code == 400
    assert response.json()["code"] == "task_not_exist"


def test_submit_status_202_is_a_setting(make_client: Any) -> None:
    assert make_client(submit_status=202).submit(NANO).status_code == 202


def test_unknown_route_and_wrong_method_use_the_error_body(client: Client) -> None:
    assert client.get("/v1/nothing").json()["code"] == "not_found"
    response = client.delete("/v1/images/tasks")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert json.loads(response.content)["code"] == "method_not_allowed"


def test_a_path_ending_in_a_newline_is_no_routes_and_changes_nothing(client: Client) -> None:
    # Python's "$" matches before a final newline: Starlette's route regexes used to take
    # these paths, so %0A submitted a task and reset the emulator.
    task_id = client.submit_ok(NANO)
    for method, path in [
        ("POST", "/v1/images/tasks%0A"),
        ("POST", "/_emulator/reset%0A"),
        ("GET", "/_emulator/tasks%0A"),
        ("GET", "/healthz%0A"),
    ]:
        response = client.request(method, path, json=NANO)
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), path
    listed = client.get("/_emulator/tasks").json()["tasks"]
    assert [view["task"]["task_id"] for view in listed] == [task_id]
    # A path parameter takes any character but "/": the newline is part of the id asked for.
    response = client.get(f"/v1/images/tasks/{task_id}%0A")
    assert (response.status_code, response.json()["code"]) == (404, "task_not_found")


def test_manual_clock_cannot_go_backwards(client: Client) -> None:
    response = client.post("/_emulator/clock/advance", json={"seconds": -1})
    assert response.status_code == 400
    assert "seconds" in response.json()["message"]


def test_real_clock_cannot_be_advanced(make_client: Any) -> None:
    response = make_client(clock="real").post("/_emulator/clock/advance", json={"seconds": 1})
    assert response.status_code == 409


def test_health_reports_the_seed_and_clock(client: Client) -> None:
    assert client.get("/_emulator/health", headers=AUTH).json() == {
        "status": "ok",
        "clock": "manual",
        "seed": 1234,
        "envelope": "wrapped",
        "store": {"backend": "memory", "ok": True},
    }


def test_a_terminal_tasks_answer_follows_settings_and_host_changed_after_it_ended(
    client: Client,
) -> None:
    # Terminal answers are kept per task (http/terminal.py); what they depend on besides the
    # task may change at run time, and each change must show in the next poll.
    done = client.submit_ok(NANO)
    failed = client.submit_ok(NANO)
    client.post(f"/_emulator/tasks/{failed}/outcome", json={"status": "failed"})
    client.advance(10_000)

    def poll(task_id: str, host: str = "testserver") -> Any:
        response = client.get(f"/v1/images/tasks/{task_id}", headers={"Host": host})
        assert response.status_code == 200, response.text
        return response.json()

    first = poll(done)
    assert first["data"]["status"] == "succeeded"
    assert first["data"]["result_url"].startswith("http://testserver/")
    assert poll(done) == first  # the same answer, kept or not
    assert poll(done, "other.example")["data"]["result_url"].startswith("http://other.example/")
    assert isinstance(poll(failed)["data"]["error"], dict)

    def patch(**changes: Any) -> None:
        response = client.patch("/_emulator/config", json=changes)
        assert response.status_code == 200, response.text

    patch(always_list_results=True)
    assert poll(done)["data"]["metadata"]["result_urls"] == [first["data"]["result_url"]]
    patch(public_base_url="https://cdn.example/")
    assert poll(done)["data"]["result_url"].startswith("https://cdn.example/_emulator/results/")
    patch(error_shape="string")
    assert isinstance(poll(failed)["data"]["error"], str)
    patch(envelope="bare")
    assert poll(done)["status"] == "succeeded"
    assert poll(failed)["status"] == "failed"


@pytest.mark.parametrize(
    ("payload", "steps"),
    [
        (
            {
                "model": "gpt-image-2",
                "prompt": "a cat",
                "size": "1024x768",
                "quality": "high",
                "output_format": "webp",
                "n": 2,
                "image": "https://example.com/a.png",
            },
            None,
        ),
        (
            {
                "model": "NanoBananaPro-4K",
                "prompt": "a dog",
                "aspect_ratio": "16:9",
                "output_format": "jpeg",
                "n": 3,
                "images": [
                    "data:image/png;base64," + base64.b64encode(png_bytes()).decode(),
                    "https://example.com/b.png",
                ],
            },
            None,
        ),
        ({"model": "NanoBanana2-1K", "prompt": "a cow", "size": "1K"}, 4),
    ],
    ids=["gpt", "nano", "per_poll"],
)
def test_a_submitted_task_holds_each_field_of_its_request_in_its_place(
    make_client: Any, payload: dict[str, Any], steps: int | None
) -> None:
    """The task is built positionally (its keyword call cost more): every field in its place."""
    options = {"clock": "per_poll", "per_poll_steps": steps} if steps else {}
    client: Client = make_client(**options)
    response = client.submit(payload)
    assert response.status_code == 200, response.text
    emulator = client.app.state.emulator  # type: ignore[attr-defined]
    task = asyncio.run(emulator.store.get_task(response.json()["data"]["task_id"]))
    fields = {name: payload.get(name) for name in FIELDS - {"image", "images"}}
    plan = emulator.config.catalogue.plan(
        **{k: v for k, v in fields.items() if k not in ("prompt", "task_type", "response_format")}
    )
    references = ([payload["image"]] if "image" in payload else []) + [
        url if url.startswith("https:") else "data:image/png;base64,…"
        for url in payload.get("images", [])
    ]
    expected = Task(
        task_id=task.task_id,
        owner=key_fingerprint(KEY),
        created_at=task.created_at,
        task_type="image2image",
        model=payload["model"],
        prompt=payload["prompt"],
        width=plan.width,
        height=plan.height,
        output_format=plan.output_format,
        n=payload.get("n", 1),
        quality=plan.quality,
        tier=plan.tier,
        aspect_ratio=plan.aspect_ratio,
        size=plan.size,
        references=tuple(references),
        has_reference=any(url.startswith("data:") for url in payload.get("images", [])),
        seed=task.seed,
        schedule=Schedule(
            task.schedule.queued_s, task.schedule.processing_s, images=plan.n, steps=steps
        ),
        polls=0,
        token=task.token,
        finished_at=None,
    )
    if not references:
        expected = dataclasses.replace(expected, task_type="text2image")
    assert task == expected
    assert (plan.quality, plan.tier, plan.size) != (None, None, None)
    assert len(task.token) == 32 and task.token not in (task.task_id, str(task.seed))
