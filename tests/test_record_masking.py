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
