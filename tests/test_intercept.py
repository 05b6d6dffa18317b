"""Interception of httpx's own transports, origin by origin, and putting them back."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from emulator.testing.intercept import Interception

ORIGINAL = (httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request)


def answering(name: str) -> httpx.MockTransport:
    """A stand-in for an emulator's transports (httpx's MockTransport is sync and async)."""
    return httpx.MockTransport(lambda request: httpx.Response(200, text=name))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def intercept(name: str, *origins: str) -> Interception:
    transport = answering(name)
    return Interception(origins, transport, transport)


def test_only_the_given_origins_are_routed() -> None:
    with intercept("a", "https://relay.example", "http://other.example:8080"):
        assert httpx.get("https://relay.example/v1/x").text == "a"
        assert httpx.get("https://relay.example:443/").text == "a"  # the default port
        assert httpx.get("http://OTHER.example:8080/").text == "a"  # hosts in any case
        with pytest.raises(httpx.ConnectError):  # another origin: the real network
            httpx.get(f"http://127.0.0.1:{closed_port()}/")
    assert (httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request) == (
        ORIGINAL
    )


def test_async_clients_are_routed_too() -> None:
    async def fetch() -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get("https://relay.example/")).text

    with intercept("a", "https://relay.example"):
        assert asyncio.run(fetch()) == "a"


def test_a_client_with_a_transport_of_its_own_is_untouched() -> None:
    with intercept("a", "https://relay.example"):
        client = httpx.Client(transport=answering("own"))
        assert client.get("https://relay.example/").text == "own"


def test_interceptions_stop_in_any_order() -> None:
    first = intercept("a", "https://a.example")
    second = intercept("b", "https://b.example")
    first.stop()
    assert httpx.get("https://b.example/").text == "b"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{closed_port()}/")
    first.stop()  # idempotent
    second.stop()
    assert httpx.HTTPTransport.handle_request is ORIGINAL[0]


def test_an_origin_routed_twice_is_refused_and_leaves_nothing_behind() -> None:
    other = f"http://127.0.0.1:{closed_port()}"
    with intercept("a", "https://relay.example"):
        with pytest.raises(ValueError, match="already routed"):
            intercept("b", other, "https://relay.example:443")
        with pytest.raises(httpx.ConnectError):  # the other origin was not left routed to "b"
            httpx.get(f"{other}/")
        assert httpx.get("https://relay.example/").text == "a"
    assert httpx.HTTPTransport.handle_request is ORIGINAL[0]


def test_a_wrapper_installed_after_ours_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    interception = intercept("a", "https://relay.example")
    ours = httpx.HTTPTransport.handle_request

    def theirs(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        return ours(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", theirs)
    interception.stop()
    assert httpx.HTTPTransport.handle_request is theirs  # not clobbered by our undo
    monkeypatch.undo()
    # Theirs undone, ours is back on the class: a pass-through now that nothing is routed.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{closed_port()}/")
    with intercept("c", "https://relay.example"):  # and it can be routed again
        assert httpx.get("https://relay.example/").text == "c"
    assert httpx.HTTPTransport.handle_request is ORIGINAL[0]


@pytest.mark.parametrize(
    "origin",
    [
        "relay.example",
        "ftp://relay.example",
        "https://relay.example/api",
        "https://u@relay.example",
    ],
)
def test_what_is_not_an_origin_is_refused(origin: str) -> None:
    with pytest.raises(ValueError, match=r"origin|URL"):
        intercept("a", origin)
