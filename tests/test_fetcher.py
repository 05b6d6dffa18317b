"""SPEC D-11: reference URLs are never fetched unless asked, and then only within the fences."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from emulator.pictures.fetcher import host_allowed, is_public_address

from .conftest import Client, png_bytes

NANO = {"model": "NanoBanana", "prompt": "from a fetched picture"}
RED = png_bytes((255, 0, 0), (64, 64))


class PictureServer(ThreadingHTTPServer):
    """A loopback web server with a few pictures and a few tricks; counts what it serves."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: PictureServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        if self.path == "/red.png":
            self._send(200, RED, "image/png")
        elif self.path == "/big.png":
            self._send(200, RED + b"\0" * 5000, "image/png")
        elif self.path == "/text.png":
            self._send(200, b"not a picture at all", "image/png")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/red.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow.png":
            time.sleep(1)  # the server is slow; the emulator's timeout is what is tested
            self._send(200, RED, "image/png")
        else:
            self._send(404, b"missing", "text/plain")

    def _send(self, status: int, body: bytes, media_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def pictures() -> Iterator[PictureServer]:
    server = PictureServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _error(response: Any) -> str:
    assert response.status_code == 400, response.text
    message: str = response.json()["message"]
    return message


def _redness(img: Image.Image) -> float:
    pixel = img.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return float(pixel[0] - (pixel[1] + pixel[2]) / 2)


def test_urls_are_not_fetched_by_default(client: Client, pictures: PictureServer) -> None:
    response = client.submit(NANO | {"image": pictures.url("/red.png")})
    assert response.status_code == 200
    assert pictures.hits == []


def test_fetched_picture_becomes_the_background(make_client: Any, pictures: PictureServer) -> None:
    client = make_client(fetch_reference_urls=True, fetch_allow_private=True)
    fetched = client.run_to_end(NANO | {"image": pictures.url("/red.png")})
    plain = client.run_to_end(NANO)
    assert pictures.hits == ["/red.png"]
    red = _redness(client.image(fetched["result_url"]))
    assert red > _redness(client.image(plain["result_url"])) + 20


def test_loopback_addresses_are_refused_unless_allowed(
    make_client: Any, pictures: PictureServer
) -> None:
    client = make_client(fetch_reference_urls=True)
    message = _error(client.submit(NANO | {"image": pictures.url("/red.png")}))
    assert "non-public address 127.0.0.1" in message
    assert "fetch_allow_private" in message
    assert pictures.hits == []


def test_hosts_off_the_allow_list_are_refused(make_client: Any, pictures: PictureServer) -> None:
    client = make_client(
        fetch_reference_urls=True, fetch_allow_private=True, fetch_allow_hosts=("cdn.example.com",)
    )
    message = _error(client.submit(NANO | {"image": pictures.url("/red.png")}))
    assert "'127.0.0.1' is not on fetch_allow_hosts" in message
    assert pictures.hits == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/big.png", "larger than the limit of 1000 bytes"),
        ("/text.png", "is not a picture"),
        ("/missing.png", "answered HTTP 404"),
        ("/redirect", "redirects are not followed"),
    ],
)
def test_bad_fetches_are_a_400_naming_why(
    make_client: Any, pictures: PictureServer, path: str, expected: str
) -> None:
    client = make_client(fetch_reference_urls=True, fetch_allow_private=True, fetch_max_bytes=1000)
    message = _error(client.submit(NANO | {"image": pictures.url(path)}))
    assert expected in message
    assert "/red.png" not in pictures.hits  # a redirect is never followed


def test_slow_servers_are_cut_off_at_the_timeout(make_client: Any, pictures: PictureServer) -> None:
    client = make_client(fetch_reference_urls=True, fetch_allow_private=True, fetch_timeout=0.2)
    message = _error(client.submit(NANO | {"image": pictures.url("/slow.png")}))
    assert "took longer than 0.2 s" in message


def test_fences_cannot_be_opened_through_the_control_plane(client: Client) -> None:
    for change in ({"fetch_reference_urls": True}, {"fetch_allow_private": True}):
        response = client.patch("/_emulator/config", json=change)
        assert response.status_code == 400
        assert "cannot change while serving" in response.json()["message"]


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("cdn.example.com", True),
        ("CDN.example.com.", True),
        ("img.example.org", True),
        ("example.org", False),
        ("evil-example.org", False),
        ("example.com", False),
    ],
)
def test_allow_list_matches_exact_hosts_and_wildcard_subdomains(host: str, allowed: bool) -> None:
    assert host_allowed(host, ("cdn.example.com", "*.example.org")) is allowed


def test_empty_allow_list_allows_any_host() -> None:
    assert host_allowed("anything.example", ())


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fe80::1%eth0", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_only_public_addresses_count_as_public(address: str, public: bool) -> None:
    assert is_public_address(address) is public
