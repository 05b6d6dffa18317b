"""No key, token or URL signature reaches a cassette, whatever the upstream labels its answers
and wherever in them a secret sits."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from emulator.recording.masking import Masker, secret_name
from emulator.recording.recorder import RecorderOptions, create_recorder_app

from .record_support import replaying, serving

KEY = "sk-live-MASKTEST-0123456789"
#: Every secret the upstream below puts in its answers; none may reach a file of the cassette.
SECRETS = [
    "AMZSIG-0000aaaa1111",
    "TOKEN-camel-2222bbbb",
    "CLIENT-secret-3333cccc",
    "PRIVATE-key-4444dddd",
    "LISTED-key-5555eeee",
    "LISTED-key-6666ffff",
    "TEXTSIG-7777gggg",
    "UPPERSIG-8888hhhh",
    "RELSIG-9999iiii",
    "FRAGTOKEN-aaaa0000",
    "HTMLSIG-bbbb1111",
]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _task(task_id: str, status: str) -> dict[str, object]:
    task: dict[str, object] = {
        "task_id": task_id,
        "status": status,
        "progress": "100%" if status == "succeeded" else "0%",
        "metadata": {"task_type": "text2image", "result_count": 0},
    }
    if status == "succeeded":
        task["result_url"] = f"https://cdn.example/{task_id}.png?X-Amz-Signature={SECRETS[0]}"
        task["metadata"] = {"task_type": "text2image", "result_count": 1}
    return task


def _upstream(request: httpx.Request) -> httpx.Response:
    """JSON labelled text/plain or text/html, secrets under every kind of name and URL."""
    if request.url.host == "cdn.example":
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
    if request.method == "POST":
        body = {"code": "success", "message": "", "data": _task("task_plain", "queued")}
        return httpx.Response(200, content=json.dumps(body), headers={"content-type": "text/plain"})
    if request.url.path.endswith("task_html"):
        page = (
            f"<p>download at https://cdn.example/x.png?X-Amz-Signature={SECRETS[10]}.</p>"
            f'<a href="//cdn.example/y.png?sig={SECRETS[8]}">'
        )
        return httpx.Response(200, content=page, headers={"content-type": "text/html"})
    task = _task("task_plain", "succeeded")
    task.update(
        accessToken=SECRETS[1],
        clientSecret=SECRETS[2],
        privateKey=SECRETS[3],
        api_key=[SECRETS[4], {"next": SECRETS[5]}],
        note=f"download at https://cdn.example/z.png?X-Amz-Signature={SECRETS[6]} today",
        upper=f"HTTPS://cdn.example/u.png?sig={SECRETS[7]}",
        relative=f"//cdn.example/r.png?sig={SECRETS[8]}",
        fragment=f"https://cdn.example/f.png#access_token={SECRETS[9]}",
    )
    body = json.dumps({"code": "success", "message": "", "data": task})
    return httpx.Response(200, content=body, headers={"content-type": "text/html; charset=utf-8"})


def test_no_secret_reaches_the_cassette_whatever_the_content_type(tmp_path: Path) -> None:
    options = RecorderOptions("http://relay.example", tmp_path, record_results=True)
    app = create_recorder_app(options, transport=httpx.MockTransport(_upstream))
    keyed = {"Authorization": f"Bearer {KEY}"}
    with serving(app) as proxy:
        submitted = httpx.post(proxy + "/v1/images/tasks", json={"prompt": "p"}, headers=keyed)
        live = httpx.get(proxy + "/v1/images/tasks/task_plain", headers=keyed)
        page = httpx.get(proxy + "/v1/images/tasks/task_html", headers=keyed)
    assert submitted.status_code == live.status_code == page.status_code == 200
    assert SECRETS[0] in live.text  # the client itself gets the real answer
    leaks = {
        f"{path.name}: {secret}"
        for path in tmp_path.rglob("*")
        if path.is_file()
        for secret in [KEY, *SECRETS]
        if secret.encode() in path.read_bytes()
    }
    assert leaks == set()
    text = (tmp_path / "cassette.jsonl").read_text("utf-8")
    assert "HTTPS://cdn.example/u.png?sig=***" in text and "//cdn.example/r.png?sig=***" in text
    assert '"api_key":["***",{"next":"***"}]' in text  # masked, its shape kept
    # The replay hands out the recorded picture, never the real signed URL.
    with replaying(tmp_path) as url:
        again = httpx.get(url + "/v1/images/tasks/task_plain", headers=keyed)
        result_url = again.json()["data"]["result_url"]
        picture = httpx.get(result_url)
    assert result_url.startswith(url + "/_recording/results/")
    assert picture.content == PNG


@pytest.mark.parametrize(
    "name", ["accessToken", "clientSecret", "privateKey", "apiKey", "APIKey", "x-amz-signature"]
)
def test_secret_names_in_any_case_style(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize("name", ["task_id", "progress", "result_url", "keyboard", "metadata"])
def test_ordinary_names_are_not_secrets(name: str) -> None:
    assert not secret_name(name)


def test_a_url_without_anything_to_mask_is_kept_as_it_was() -> None:
    masker = Masker()
    data = b'{"result_url":"HTTPS://cdn.example/a.png","n":1}'
    assert masker.body(data) == (data, False)
    assert masker.body(b"see https://cdn.example/a.png.") == (
        b"see https://cdn.example/a.png.",
        False,
    )


def _echo(request: httpx.Request) -> httpx.Response:
    """A service that echoes the prompt back, as some do."""
    prompt = json.loads(request.content)["prompt"]
    task = {"task_id": "task_echo", "status": "queued", "prompt": prompt}
    return httpx.Response(200, json={"code": "success", "message": "", "data": task})


def test_a_url_in_a_prompt_is_masked_in_place_and_the_submission_still_replays(
    tmp_path: Path,
) -> None:
    # Its query value used to be learned and scrubbed from every text ("a *** fox"), and the
    # replay compared the raw request with the masked recording: 404 not_recorded.
    prompt = "a watercolor fox in the style of https://example.com/gallery?style=watercolor"
    submission = {"model": "gpt-image-2", "prompt": prompt}
    options = RecorderOptions("http://relay.example", tmp_path)
    app = create_recorder_app(options, transport=httpx.MockTransport(_echo))
    keyed = {"Authorization": f"Bearer {KEY}"}
    with serving(app) as proxy:
        assert httpx.post(proxy + "/v1/images/tasks", json=submission, headers=keyed).is_success
    text = (tmp_path / "cassette.jsonl").read_text("utf-8")
    masked = "a watercolor fox in the style of https://example.com/gallery?style=***"
    assert text.count(masked) == 2  # the request and the echo; the word itself kept
    with replaying(tmp_path) as url:
        again = httpx.post(url + "/v1/images/tasks", json=submission, headers=keyed)
    assert again.status_code == 200
    assert again.json()["data"]["task_id"] == "task_echo"


def test_ordinary_values_under_a_secret_name_do_not_mangle_the_rest() -> None:
    # "policy" is a credential's name (a signed upload's); its innocent members were learned
    # and scrubbed everywhere: "quality":"***","size":"***x***".
    task = {
        "task_id": "task_1",
        "quality": "standard",
        "size": "1024x1024",
        "policy": {"moderation": "standard", "max_side": 1024},
    }
    masked, changed = Masker().body(json.dumps({"data": task}).encode())
    assert changed
    assert json.loads(masked)["data"] == {
        "task_id": "task_1",
        "quality": "standard",
        "size": "1024x1024",
        "policy": {"moderation": "***", "max_side": "***"},
    }


def test_masking_never_leaves_invalid_json() -> None:
    # Every query value of a URL was learned, then scrubbed from the bytes: "created":***.
    url = "https://cdn.example/a.png?Expires=1700000000&Signature=Zm9vYmFy0123456789"
    data = json.dumps({"created": 1700000000, "width": 1024, "url": url, "key": 1024}).encode()
    masked, _ = Masker().body(data)
    assert json.loads(masked) == {
        "created": 1700000000,
        "width": 1024,
        "url": "https://cdn.example/a.png?Expires=***&Signature=***",
        "key": "***",
    }


def test_a_token_under_an_innocent_query_name_is_still_scrubbed_everywhere() -> None:
    token = "abcd1234EFGH5678ijkl"
    data = json.dumps({"url": f"https://cdn.example/a.png?s={token}", "note": f"t={token}"})
    masked, _ = Masker().body(data.encode())
    assert token not in masked.decode()
    assert json.loads(masked)["note"] == "t=***"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cat//@artist, 2//3 of //x", "cat//@artist, 2//3 of //x"),  # no host: not a URL
        ("see //cdn.example/r.png?sig=abc.", "see //cdn.example/r.png?sig=***."),
        ("//u:pw@cdn.example/r.png", "//***@cdn.example/r.png"),
    ],
)
def test_a_scheme_relative_url_needs_a_host_name(text: str, expected: str) -> None:
    assert Masker().text_urls(text) == expected


@pytest.mark.parametrize("content_type", ["text/plain", "application/json"])
def test_an_answer_nested_too_deeply_is_kept_as_text(tmp_path: Path, content_type: str) -> None:
    # Masking it as JSON recursed past Python's limit: the client got a 500 and the paid
    # submission, which had reached the upstream, no cassette line.
    deep = b"[" * 900 + b"]" * 900
    sent: list[bytes] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200, content=deep, headers={"content-type": content_type})

    options = RecorderOptions("http://relay.example", tmp_path)
    app = create_recorder_app(options, transport=httpx.MockTransport(upstream))
    keyed = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    with serving(app) as proxy:
        answer = httpx.post(proxy + "/v1/images/tasks", content=deep, headers=keyed)
    assert (answer.status_code, answer.content, len(sent)) == (200, deep, 1)
    [line] = [json.loads(x) for x in (tmp_path / "cassette.jsonl").read_text().splitlines()[1:]]
    assert line["response"]["body"] == {"text": deep.decode()}
    assert line["request"]["body"] == {"text": deep.decode()}
    with replaying(tmp_path) as url:  # and its submission still replays
        again = httpx.post(url + "/v1/images/tasks", content=deep, headers=keyed)
    assert (again.status_code, again.content) == (200, deep)
