"""Submission rules: presence, types, task_type inference, reference pictures, bodies."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import pytest
from PIL import Image

from emulator.core.checks import WHITE_SPACE

from .conftest import KEY, Client, png_bytes

NANO = {"model": "NanoBanana2-0.5K", "prompt": "make it shine"}


def _error(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "data"} and body["data"] is None
    message: str = body["message"]
    return message


def _task_type(client: Client, payload: dict[str, Any]) -> str:
    response = client.submit(payload)
    assert response.status_code == 200, response.text
    task_type: str = response.json()["data"]["metadata"]["task_type"]
    return task_type


def test_missing_prompt_is_rejected(client: Client) -> None:
    assert _error(client.submit({"model": "NanoBanana"})) == "prompt is required"


def test_empty_prompt_is_rejected(client: Client) -> None:
    assert _error(client.submit({"model": "NanoBanana", "prompt": ""})) == (
        "prompt must not be blank (empty or only whitespace)"
    )


@pytest.mark.parametrize(
    "prompt",
    [
        " ",
        "\t\n\r\v\f",
        "\u3000",  # ideographic space: what a Chinese keyboard types
        "\u3000 \u3000",
        "\u00a0",  # no-break space
        "\u0085\u2028\u2029",  # next line, line and paragraph separators
        "\u2002\u2003\u2009\u200a\u202f\u205f\u1680",  # the other Unicode spaces
    ],
)
def test_a_prompt_of_only_whitespace_is_rejected_naming_prompt(client: Client, prompt: str) -> None:
    response = client.submit({"model": "NanoBanana", "prompt": prompt})
    assert _error(response) == "prompt must not be blank (empty or only whitespace)"
    assert client.get("/_emulator/tasks").json()["tasks"] == []


def test_a_blank_prompt_is_rejected_in_a_form_too(client: Client) -> None:
    parts = {"model": (None, "NanoBanana"), "prompt": (None, "\u3000\n")}
    response = client.post("/v1/images/tasks", files=parts)
    assert _error(response) == "prompt must not be blank (empty or only whitespace)"


@pytest.mark.parametrize("prompt", ["\u3000猫\u3000", " a ", "\u200b", "\ufeff", "\x1c"])
def test_a_prompt_with_anything_but_whitespace_is_accepted(client: Client, prompt: str) -> None:
    # Zero-width space and BOM are formatting characters, not whitespace, in Unicode (and in
    # Python's and Go's trimming); U+001C is a control character, which Unicode's White_Space
    # leaves out although Python's str.isspace counts it.
    assert client.submit({"model": "NanoBanana", "prompt": prompt}).status_code == 200


def test_white_space_is_unicode_s_white_space_property() -> None:
    # Python's str.isspace is White_Space plus the four information separators U+001C-U+001F.
    python = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert set(WHITE_SPACE) == python - {"\x1c", "\x1d", "\x1e", "\x1f"}
    assert len(WHITE_SPACE) == 25 == len(set(WHITE_SPACE))


def test_missing_model_is_rejected(client: Client) -> None:
    assert _error(client.submit({"prompt": "x"})) == "model is required"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("prompt", 5, "prompt must be a string"),
        ("model", ["NanoBanana"], "model must be a string"),
        ("n", "2", "n must be an integer"),
        ("n", 1.5, "n must be an integer"),
        ("n", True, "n must be an integer"),
        ("size", 1024, "size must be a string"),
        ("task_type", "video", "task_type must be text2image or image2image"),
        ("response_format", "b64_json", "response_format must be 'url'"),
        ("image", 3, "image must be a string"),
        ("images", "https://example.com/a.png", "images must be an array"),
        ("images", [], "images must contain at least one URL"),
        ("image", "ftp://example.com/a.png", "image must be an http(s) URL or a data: URL"),
    ],
)
def test_wrong_field_type_names_the_field(
    client: Client, field: str, value: Any, needle: str
) -> None:
    assert needle in _error(client.submit(NANO | {field: value}))


def test_null_optional_fields_count_as_absent(client: Client) -> None:
    payload = NANO | {"size": None, "n": None, "quality": None, "task_type": None}
    assert client.submit(payload).status_code == 200


def test_unknown_fields_are_ignored(client: Client) -> None:
    assert client.submit(NANO | {"user": "me", "style": "vivid"}).status_code == 200


def test_task_type_is_text2image_without_pictures(client: Client) -> None:
    assert _task_type(client, NANO) == "text2image"


def test_task_type_is_inferred_from_image(client: Client) -> None:
    assert _task_type(client, NANO | {"image": "https://example.com/in.png"}) == "image2image"


def test_task_type_is_inferred_from_images(client: Client) -> None:
    urls = ["https://example.com/a.png", "https://example.com/b.png"]
    assert _task_type(client, NANO | {"images": urls}) == "image2image"


def test_explicit_task_type_wins_over_inference(client: Client) -> None:
    payload = NANO | {"image": "https://example.com/in.png", "task_type": "text2image"}
    assert _task_type(client, payload) == "text2image"


def test_image2image_without_a_picture_is_rejected(client: Client) -> None:
    message = _error(client.submit(NANO | {"task_type": "image2image"}))
    assert "image2image needs a reference picture" in message


def test_too_many_reference_pictures_are_rejected(make_client: Any) -> None:
    client = make_client(max_reference_images=2)
    urls = [f"https://example.com/{i}.png" for i in range(3)]
    assert "at most 2 reference pictures" in _error(client.submit(NANO | {"images": urls}))


def test_multipart_file_makes_image2image(client: Client) -> None:
    response = client.post(
        "/v1/images/tasks",
        data={"model": "NanoBanana2-0.5K", "prompt": "x", "n": "2"},
        files={"image": ("in.png", png_bytes(), "image/png")},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["metadata"]["task_type"] == "image2image"
    client.advance(1000)
    assert client.task(data["task_id"])["metadata"]["result_count"] == 2


def test_multipart_accepts_several_files_and_url_fields(client: Client) -> None:
    response = client.post(
        "/v1/images/tasks",
        data={"model": "NanoBanana", "prompt": "x", "images": ["https://example.com/b.png"]},
        files=[
            ("image", ("a.png", png_bytes(), "image/png")),
            ("image", ("b.png", png_bytes((0, 0, 255)), "image/png")),
        ],
    )
    assert response.status_code == 200, response.text


def test_multipart_n_must_be_an_integer(client: Client) -> None:
    response = client.post(
        "/v1/images/tasks",
        data={**NANO, "n": "two"},
        files={"image": ("a.png", png_bytes(), "image/png")},
    )
    assert "n must be an integer" in _error(response)


def test_multipart_non_image_upload_is_rejected(client: Client) -> None:
    response = client.post(
        "/v1/images/tasks",
        data=NANO,
        files={"image": ("cat.png", b"this is not a picture", "image/png")},
    )
    assert "image is not a picture" in _error(response)


def test_multipart_truncated_picture_is_rejected(client: Client) -> None:
    out = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(out, "JPEG")
    response = client.post(
        "/v1/images/tasks",
        data=NANO,
        files={"image": ("cut.jpg", out.getvalue()[: len(out.getvalue()) // 2], "image/jpeg")},
    )
    assert "image is truncated or corrupt" in _error(response)


def test_picture_with_too_many_pixels_is_rejected(make_client: Any) -> None:
    client = make_client(max_reference_pixels=1000)
    response = client.post(
        "/v1/images/tasks",
        data=NANO,
        files={"image": ("big.png", png_bytes(size=(100, 100)), "image/png")},
    )
    assert "more than the limit of 1000 pixels" in _error(response)


def test_data_url_picture_is_decoded(client: Client) -> None:
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    assert _task_type(client, NANO | {"image": url}) == "image2image"


def test_data_url_that_is_not_a_picture_is_rejected(client: Client) -> None:
    url = "data:image/png;base64," + base64.b64encode(b"hello").decode()
    assert "image is not a picture" in _error(client.submit(NANO | {"image": url}))


def test_data_url_with_bad_base64_is_rejected(client: Client) -> None:
    message = _error(client.submit(NANO | {"images": ["data:image/png;base64,@@@"]}))
    assert message == "images[0] is not valid base64"


def test_unsupported_content_type_is_415(client: Client) -> None:
    response = client.post(
        "/v1/images/tasks", content=b"model=x", headers={"content-type": "text/plain"}
    )
    assert "Content-Type must be application/json" in _error(response, 415)


def test_form_urlencoded_is_415(client: Client) -> None:
    response = client.post("/v1/images/tasks", data=NANO)
    assert response.status_code == 415


def test_body_over_the_limit_is_413(make_client: Any) -> None:
    client = make_client(max_body_bytes=2048)
    response = client.submit(NANO | {"prompt": "x" * 4096})
    assert "larger than the limit of 2048 bytes" in _error(response, 413)


@pytest.mark.parametrize(
    ("first", "second", "status"),
    [("text/plain", "application/json", 415), ("application/json; charset=utf-8", "x/y", 200)],
)
def test_the_first_content_type_header_as_sent_decides(
    client: Client, first: str, second: str, status: int
) -> None:
    response = client.post(
        "/v1/images/tasks",
        content=json.dumps(NANO).encode(),
        headers=[("content-type", first), ("content-type", second)],
    )
    assert response.status_code == status, response.text


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(make_client: Any) -> None:
    """The first Content-Length header as sent is the one checked (the body itself is short)."""
    client = make_client(max_body_bytes=2048)
    app = client.app
    body = json.dumps(NANO).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for lengths, status in (((b"4096", b"20"), 413), ((b"20", b"4096"), 200)):
        headers = [(b"host", b"testserver"), (b"authorization", b"Bearer " + KEY.encode())]
        headers += [(b"content-type", b"application/json")]
        headers += [(b"content-length", length) for length in lengths]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/images/tasks",
            "raw_path": b"/v1/images/tasks",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
        }
        sent.clear()
        asyncio.run(app(scope, receive, send))
        assert sent[0]["status"] == status, sent


def test_invalid_json_is_rejected(client: Client) -> None:
    response = client.post(
        "/v1/images/tasks", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert _error(response).startswith("request body is not valid JSON")


def test_empty_json_body_is_rejected(client: Client) -> None:
    response = client.post(
        "/v1/images/tasks", content=b"", headers={"content-type": "application/json"}
    )
    assert "request body is empty" in _error(response)


@pytest.mark.parametrize("body", [b"[]", b"3", b'"x"', b"null"])
def test_json_that_is_not_an_object_is_rejected(client: Client, body: bytes) -> None:
    response = client.post(
        "/v1/images/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert _error(response) == "request body must be a JSON object"


def test_duplicate_json_keys_are_rejected(client: Client) -> None:
    raw = b'{"model": "NanoBanana", "prompt": "a", "prompt": "b"}'
    response = client.post(
        "/v1/images/tasks", content=raw, headers={"content-type": "application/json"}
    )
    assert _error(response) == "field 'prompt' appears more than once"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b'{"model": "NanoBanana", "prompt": "a", "b": 1, "b": 2, "model": "x"}', "b"),
        (b'{"model": "NanoBanana", "prompt": "a", "x": {"k": 1, "j": 2, "j": 3, "k": 4}}', "j"),
    ],
)
def test_the_first_json_name_met_again_is_the_one_named(
    client: Client, raw: bytes, named: str
) -> None:
    response = client.post(
        "/v1/images/tasks", content=raw, headers={"content-type": "application/json"}
    )
    assert _error(response) == f"field {named!r} appears more than once"


@pytest.mark.parametrize(
    "tail", ["", "\n", " \t\r\n ", " x", "\x0b", "\u3000", "{}", "\n\n]", "\x00"]
)
@pytest.mark.parametrize("head", ["", " ", "\n"])
def test_what_surrounds_a_json_object_is_read_as_json_loads_reads_it(
    client: Client, head: str, tail: str
) -> None:
    """JSON white space around the object is allowed, anything else is json's own error."""
    text = head + json.dumps(NANO) + tail
    response = client.post(
        "/v1/images/tasks", content=text.encode(), headers={"content-type": "application/json"}
    )
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        assert _error(response) == f"request body is not valid JSON: {exc.msg} at {exc.pos}"
    else:
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_json_in_any_encoding_json_detects_is_read(client: Client, encoding: str) -> None:
    # RFC 8259 asks for UTF-8, but json.loads detects the others: the emulator reads what it
    # reads (a UTF-16-LE "{" is followed by a NUL byte).
    raw = json.dumps(NANO | {"prompt": "a cat, 猫"}).encode(encoding)
    response = client.post(
        "/v1/images/tasks", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


def test_prompt_longer_than_the_limit_is_rejected(make_client: Any) -> None:
    client = make_client(max_prompt_chars=10)
    assert "prompt is longer than the limit of 10" in _error(
        client.submit(NANO | {"prompt": "y" * 11})
    )


def test_deeply_nested_json_is_a_400(client: Client) -> None:
    raw = ("[" * 100_000 + "]" * 100_000).encode()
    body = b'{"model": "NanoBanana", "prompt": "x", "extra": ' + raw + b"}"
    response = client.post(
        "/v1/images/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert json.loads(response.content)["code"] == "invalid_request"


def test_own_result_url_is_used_as_the_reference(client: Client) -> None:
    red = client.run_to_end(
        {
            "model": "NanoBanana2-0.5K",
            "prompt": "red",
            "image": "data:image/png;base64,"
            + base64.b64encode(png_bytes((255, 0, 0), (128, 128))).decode(),
        }
    )
    follow = client.submit(NANO | {"image": red["result_url"]})
    assert follow.status_code == 200
    task_id = follow.json()["data"]["task_id"]
    client.advance(1000)
    derived = client.image(client.task(task_id)["result_url"]).convert("RGB")
    plain = client.image(client.run_to_end(NANO)["result_url"]).convert("RGB")

    def redness(img: Image.Image) -> float:
        r, g, b = img.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))  # type: ignore[misc]
        return float(r - (g + b) / 2)

    assert redness(derived) > redness(plain) + 20


def test_pictures_of_one_request_share_one_pixel_budget(make_client: Any) -> None:
    client = make_client(max_reference_pixels=1000)
    url = "data:image/png;base64," + base64.b64encode(png_bytes(size=(20, 20))).decode()
    assert client.submit(NANO | {"images": [url, url]}).status_code == 200  # 800 pixels
    message = _error(client.submit(NANO | {"images": [url, url, url]}))  # 1200 pixels
    assert "images[2]" in message
    assert "hold 1200 pixels together, more than the limit of 1000 pixels" in message


def test_commas_and_brackets_inside_strings_are_not_structure(make_client: Any) -> None:
    client = make_client(max_json_items=16)
    prompt = ",:[{" * 5000
    assert client.submit(NANO | {"prompt": prompt}).status_code == 200


def test_json_values_and_names_are_bounded_before_parsing(make_client: Any) -> None:
    client = make_client(max_json_items=16)
    # {"model", "prompt", "extra": [...]}: 1 object + 3 names + 3 values + the array's items.
    fits = NANO | {"extra": list(range(9))}
    assert client.submit(fits).status_code == 200
    message = _error(client.submit(NANO | {"extra": list(range(10))}))
    assert message == (
        "request body holds more than the limit of 16 JSON values and names (max_json_items)"
    )
    names = _error(client.submit(NANO | {f"k{i}": 0 for i in range(10)}))
    assert "max_json_items" in names


def test_a_large_data_url_decodes_exactly_in_slices() -> None:
    import os

    from emulator.pictures.references import decode_data_url

    raw = os.urandom(3 * 1024 * 1024 + 7)
    url = "data:image/png;base64," + base64.b64encode(raw).decode()
    assert decode_data_url(url, "image", 10 * 1024 * 1024) == raw
    padded_inside = url[:100] + "=" + url[101:]
    with pytest.raises(Exception, match="not valid base64"):
        decode_data_url(padded_inside, "image", 10 * 1024 * 1024)
