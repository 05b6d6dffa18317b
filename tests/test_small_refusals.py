"""A refusal stays small whatever the size of what it refuses (docs/hardening.md: messages
never echo the refused text, only its ``repr`` cut short), and still names the field and the
rule: every request field, path segment, query parameter and header that a message names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.core.checks import shown

from .conftest import Client, MakeClient

#: The most a refusal's body may hold, whatever the input's size.
MAX_REFUSAL_BYTES = 1024
#: Long inputs: a body field (well under the body limit) and a path, query or header value
#: (well under the 64 KiB header limit).
LONG_FIELD = "M" * 100_000
LONG_SEGMENT = "t" * 30_000
#: A multipart part's name: python-multipart refuses a part head of 5000 bytes or so.
LONG_NAME = "t" * 2000
GPT = {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1024"}
NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}
LATENCY = {"kind": "latency", "seconds": 1}

#: (name, submission body, status, what the message must say: the field and the rule).
SUBMISSIONS: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
    ("model", GPT | {"model": LONG_FIELD}, 400, ("model", "does not exist")),
    ("size", GPT | {"size": LONG_FIELD}, 400, ("size", "is not one of the 48 sizes")),
    ("nano size", NANO | {"size": LONG_FIELD}, 400, ("size must be WIDTHxHEIGHT",)),
    ("quality", GPT | {"quality": LONG_FIELD}, 400, ("quality must be one of",)),
    ("aspect_ratio", NANO | {"aspect_ratio": LONG_FIELD}, 400, ("aspect_ratio", "use one of")),
    ("gpt aspect_ratio", GPT | {"aspect_ratio": LONG_FIELD}, 400, ("aspect_ratio",)),
    ("output_format", GPT | {"output_format": LONG_FIELD}, 400, ("output_format", "one of")),
    ("task_type", GPT | {"task_type": LONG_FIELD}, 400, ("task_type must be text2image",)),
    ("response_format", GPT | {"response_format": LONG_FIELD}, 400, ("response_format must",)),
    ("n text", GPT | {"n": LONG_FIELD}, 400, ("n must be an integer",)),
    ("n list", GPT | {"n": [LONG_FIELD]}, 400, ("n must be an integer",)),
    ("prompt", GPT | {"prompt": LONG_FIELD}, 400, ("prompt is longer than the limit",)),
    ("image", NANO | {"image": LONG_FIELD}, 400, ("image must be an http(s) URL",)),
    ("images", NANO | {"images": [LONG_FIELD]}, 400, ("images[0] must be an http(s) URL",)),
]


def _message(response: Any) -> str:
    body = response.json()
    message: str = body["error"]["message"] if "error" in body else body["message"]
    return message


def _check(response: Any, status: int, says: tuple[str, ...]) -> None:
    assert response.status_code == status, response.text[:300]
    assert len(response.content) <= MAX_REFUSAL_BYTES, response.text[:300]
    message = _message(response)
    for words in says:
        assert words in message, message


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [pytest.param(body, status, says, id=name) for name, body, status, says in SUBMISSIONS],
)
def test_a_submission_refusal_stays_small(
    client: Client, body: dict[str, Any], status: int, says: tuple[str, ...]
) -> None:
    _check(client.submit(body), status, says)


def test_a_huge_integer_n_is_refused_in_a_small_answer(client: Client) -> None:
    # A JSON number of 4000 digits is an int in Python: its text must not come back whole.
    content = json.dumps(GPT)[:-1] + ', "n": ' + "9" * 4000 + "}"
    response = client.post(
        "/v1/images/tasks", content=content, headers={"Content-Type": "application/json"}
    )
    _check(response, 400, ("n must be between",))


def test_a_repeated_long_json_key_is_refused_in_a_small_answer(client: Client) -> None:
    content = json.dumps(GPT)[:-1] + f', "{LONG_FIELD}": 1, "{LONG_FIELD}": 2}}'
    response = client.post(
        "/v1/images/tasks", content=content, headers={"Content-Type": "application/json"}
    )
    _check(response, 400, ("appears more than once",))


def _multipart(fields: dict[str, str]) -> dict[str, Any]:
    """A multipart/form-data body of text ``fields`` (httpx would send a form without files
    as application/x-www-form-urlencoded)."""
    parts = "".join(
        f'--B\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    return {
        "content": (parts + "--B--\r\n").encode(),
        "headers": {"Content-Type": "multipart/form-data; boundary=B"},
    }


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        pytest.param({"size": LONG_FIELD}, ("size", "is not one of"), id="size"),
        pytest.param({"n": LONG_FIELD}, ("n must be an integer",), id="n"),
        pytest.param({"task_type": LONG_FIELD}, ("task_type must be text2image",), id="task_type"),
        pytest.param({"model": LONG_FIELD}, ("model", "does not exist"), id="model"),
    ],
)
def test_a_multipart_refusal_stays_small(
    client: Client, fields: dict[str, str], says: tuple[str, ...]
) -> None:
    response = client.post("/v1/images/tasks", **_multipart(GPT | fields))
    _check(response, 400, says)


def test_a_file_part_of_a_long_name_is_refused_in_a_small_answer(client: Client) -> None:
    files = {LONG_NAME: ("a.png", b"x", "image/png")}
    response = client.post("/v1/images/tasks", data=GPT, files=files)
    _check(response, 400, ("is not accepted", "upload pictures as 'image'"))


def test_an_upload_over_the_limit_with_a_long_name_is_refused_in_a_small_answer(
    make_client: MakeClient,
) -> None:
    client = make_client(max_upload_bytes=10)
    files = {"image": (LONG_NAME + ".png", b"x" * 11, "image/png")}
    response = client.post("/v1/images/tasks", data=NANO, files=files)
    _check(response, 413, ("uploaded image", "larger than the limit of 10 bytes"))


def test_a_long_content_type_is_refused_in_a_small_answer(client: Client) -> None:
    headers = {"Content-Type": "text/" + LONG_SEGMENT}
    response = client.post("/v1/images/tasks", content=b"{}", headers=headers)
    _check(response, 415, ("Content-Type must be application/json or multipart/form-data",))


#: (method, path, JSON body, status, what the message must say). ``{task}`` is a real task's
#: id, ``{token}`` its result token.
PATHS: list[tuple[str, str, Any, int, tuple[str, ...]]] = [
    ("GET", f"/v1/images/tasks/{LONG_SEGMENT}", None, 404, ("task", "does not exist")),
    ("GET", f"/_emulator/tasks/{LONG_SEGMENT}", None, 404, ("task", "does not exist")),
    ("HEAD", f"/_emulator/tasks/{LONG_SEGMENT}", None, 404, ()),
    (
        "POST",
        f"/_emulator/tasks/{LONG_SEGMENT}/outcome",
        {"status": "failed"},
        404,
        ("task", "does not exist"),
    ),
    ("DELETE", f"/_emulator/faults/{LONG_SEGMENT}", None, 404, ("fault rule", "does not exist")),
    ("PUT", f"/_emulator/balances/{LONG_SEGMENT}", {"balance": 1}, 400, ("key is longer",)),
    ("GET", f"/_emulator/results/{LONG_SEGMENT}/{'a' * 32}/0.png", None, 404, ("does not exist",)),
    ("GET", f"/_emulator/results/{{task}}/{LONG_SEGMENT}/0.png", None, 404, ("does not exist",)),
    ("GET", f"/_emulator/results/{{task}}/{{token}}/{LONG_SEGMENT}", None, 404, ("no result",)),
    ("GET", f"/_emulator/requests?body[{LONG_SEGMENT}]=1", None, 400, ("body field name",)),
    ("GET", f"/_emulator/requests?{LONG_SEGMENT}=1", None, 400, ("unknown journal",)),
    ("GET", f"/_emulator/requests?after={LONG_SEGMENT}", None, 400, ("after",)),
    ("GET", f"/_emulator/requests?method={LONG_SEGMENT[:200]}1", None, 400, ("method",)),
    ("GET", f"/_emulator/tasks?status={LONG_SEGMENT}", None, 400, ("status must be one of",)),
    ("GET", f"/_emulator/tasks?limit={LONG_SEGMENT}", None, 400, ("limit must be",)),
    ("GET", f"/_emulator/tasks?{LONG_SEGMENT}=1", None, 400, ("unknown task parameter",)),
    ("GET", f"/_emulator/usage?state={LONG_SEGMENT}", None, 400, ("state must be one of",)),
    ("GET", f"/_emulator/usage?after={LONG_SEGMENT}", None, 400, ("after",)),
    ("GET", f"/_emulator/faults?{LONG_SEGMENT}=1", None, 400, ("unknown query parameter",)),
    ("POST", "/_emulator/clock/advance", {"seconds": LONG_FIELD}, 400, ("seconds must be",)),
    ("PATCH", "/_emulator/config", {LONG_FIELD: 1}, 400, ("unknown setting",)),
    ("PATCH", "/_emulator/config", {"failure_rate": LONG_FIELD}, 400, ("failure_rate",)),
    ("POST", "/_emulator/faults", {"id": LONG_FIELD, "effect": LATENCY}, 400, ("fault.id",)),
    ("POST", "/_emulator/faults", {LONG_FIELD: 1}, 400, ("unknown field",)),
    (
        "POST",
        "/_emulator/faults",
        {"effect": {"kind": LONG_FIELD}},
        400,
        ("fault.effect.kind must be one of",),
    ),
    (
        "POST",
        "/_emulator/faults",
        {"effect": {"kind": "respond", "status": 500, "headers": {LONG_SEGMENT: "x"}}},
        400,
        ("headers",),
    ),
]


def _task_and_token(client: Client) -> tuple[str, str]:
    task_id = client.submit_ok(NANO)
    client.advance(10_000)
    url: str = client.task(task_id)["result_url"]
    return task_id, url.split("/")[-2]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [pytest.param(*case, id=f"{case[0]} {case[1][:48]}") for case in PATHS],
)
def test_a_path_or_query_refusal_stays_small(
    client: Client, method: str, path: str, body: Any, status: int, says: tuple[str, ...]
) -> None:
    if "{task}" in path:
        task_id, token = _task_and_token(client)
        path = path.replace("{task}", task_id).replace("{token}", token)
    response = client.request(method, path, json=body)
    if method == "HEAD":
        assert response.status_code == status and not response.content
        assert int(response.headers["content-length"]) <= MAX_REFUSAL_BYTES
        return
    _check(response, status, says)


def test_an_unknown_task_refusal_stays_small_as_the_relay_family_answers_it(
    make_client: MakeClient,
) -> None:
    client = make_client(unknown_task_status=400)
    _check(client.get(f"/v1/images/tasks/{LONG_SEGMENT}"), 400, ("does not exist",))


def test_ending_a_task_that_ended_with_a_long_message_is_refused_in_a_small_answer(
    client: Client,
) -> None:
    task_id, _ = _task_and_token(client)
    response = client.post(f"/_emulator/tasks/{task_id}/outcome", json={"status": "failed"})
    _check(response, 409, ("has already ended",))


@pytest.mark.parametrize(
    "path",
    [
        f"/_emulator/ui/tasks/{LONG_SEGMENT}",
        f"/_emulator/ui/live/tasks/{LONG_SEGMENT}",
        f"/_emulator/ui/tasks/{LONG_SEGMENT}/pictures/0",
        "/_emulator/ui/tasks/{task}/pictures/" + "9" * 4000,
    ],
    ids=["task page", "live task", "picture", "picture index"],
)
def test_a_dashboard_refusal_stays_small(client: Client, path: str) -> None:
    if "{task}" in path:
        path = path.replace("{task}", _task_and_token(client)[0])
    response = client.get(path)
    assert response.status_code == 404, response.text[:300]
    # A page around the message: bounded too, and the long text is not in it.
    assert len(response.content) <= 2 * MAX_REFUSAL_BYTES, response.text[:300]
    assert "t" * 100 not in response.text and "9" * 100 not in response.text


@given(st.text(max_size=5000) | st.binary(max_size=5000) | st.integers(), st.integers(2, 200))
def test_shown_is_at_most_its_limit_and_a_short_value_is_its_repr(value: Any, limit: int) -> None:
    text = shown(value, limit)
    assert len(text) <= limit
    assert text == repr(value) or (text.endswith("…") and repr(value).startswith(text[:-1]))


def test_shown_shows_an_integer_too_long_for_its_repr() -> None:
    # Past 4300 digits ``repr`` raises: the message is still made, and still short.
    assert shown(10**5000) == "<int too large to show>"
    assert shown([10**5000]) == "<list too large to show>"
