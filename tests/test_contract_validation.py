"""Validation rules changed so the emulator accepts exactly what the contract allows.

Each was found by the schemathesis run of tests/test_contract.py (see docs/contract.md).
"""

from __future__ import annotations

import pytest

from .conftest import Client

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}
URL = "https://example.com/a.png"


@pytest.mark.parametrize(
    "image",
    ["ftp://example.com/a.png", "http://[", "http://a b", "https://例え.jp/a.png", "x" * 10],
)
def test_malformed_reference_url_is_refused_even_when_text2image_ignores_it(
    client: Client, image: str
) -> None:
    response = client.submit(NANO | {"task_type": "text2image", "image": image})
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("image must be an http(s) URL or a data: URL")


def test_unparseable_reference_url_is_a_400_not_a_server_error(client: Client) -> None:
    # urlsplit("http://[") raises ValueError; it used to escape as a 500.
    response = client.submit(NANO | {"image": "http://["})
    assert response.status_code == 400


def test_reference_url_longer_than_8192_characters_is_refused(client: Client) -> None:
    long_url = "https://example.com/" + "a" * 8192
    assert client.submit(NANO | {"images": [long_url]}).status_code == 400
    assert client.submit(NANO | {"images": [long_url[:8192]]}).status_code == 200


def test_image_urls_in_json_is_an_unknown_key_and_ignored(client: Client) -> None:
    # "image_urls" is the validator's internal name for multipart text `image` fields; a JSON
    # body carrying it used to crash the validator (TypeError -> 500).
    response = client.submit(NANO | {"image_urls": 5})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["metadata"]["task_type"] == "text2image"


def test_repeated_unknown_multipart_field_is_ignored(client: Client) -> None:
    fields = [("model", "NanoBanana2-0.5K"), ("prompt", "a cat"), ("x", "1"), ("x", "2")]
    response = client.post(
        "/v1/images/tasks",
        content=_multipart(fields),
        headers={"content-type": "multipart/form-data; boundary=BOUNDARY"},
    )
    assert response.status_code == 200, response.text


def test_repeated_known_multipart_field_is_still_refused(client: Client) -> None:
    fields = [("model", "NanoBanana2-0.5K"), ("prompt", "a"), ("prompt", "b")]
    response = client.post(
        "/v1/images/tasks",
        content=_multipart(fields),
        headers={"content-type": "multipart/form-data; boundary=BOUNDARY"},
    )
    assert response.status_code == 400
    assert "'prompt' appears more than once" in response.json()["message"]


@pytest.mark.parametrize(("n", "status"), [(2.0, 200), (2.5, 400), (1e300, 400)])
def test_integral_json_number_is_an_integer_n(client: Client, n: float, status: int) -> None:
    # JSON has one number type and JSON Schema calls 2.0 an integer.
    response = client.submit(NANO | {"n": n})
    assert response.status_code == status, response.text


def test_the_images_limit_counts_the_images_list(client: Client) -> None:
    urls = [f"https://example.com/{i}.png" for i in range(17)]
    assert client.submit(NANO | {"image": URL, "images": urls[:16]}).status_code == 200
    response = client.submit(NANO | {"images": urls})
    assert response.status_code == 400
    # The message says the rule as it is: the list is counted, `image` is not.
    assert response.json()["message"] == (
        "at most 16 reference pictures are accepted in images, got 17 (a picture in image "
        "is not counted)"
    )


def _multipart(fields: list[tuple[str, str]]) -> bytes:
    parts = [
        f'--BOUNDARY\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    return ("".join(parts) + "--BOUNDARY--\r\n").encode()
