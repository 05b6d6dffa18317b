"""The plugin's clients, public transports and intercept(), in a downstream project run by
pytester."""

from __future__ import annotations

from http.cookiejar import CookieJar
from typing import Any

import httpx
import pytest

from emulator.core.journal import mask_header

from .pytester_support import run

pytest_plugins = ["pytester"]


INTERCEPTION = """
from typing import Any

import httpx
import pytest

BODY = {"model": "NanoBanana2-0.5K", "prompt": "x"}
ORIGINAL = (httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request)


def generate(base_url):
    \"\"\"Code under test: makes its own client from a configured base URL.\"\"\"
    with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer sk-app"}) as client:
        task_id = client.post("/v1/images/tasks", json=BODY).json()["data"]["task_id"]
        return client.get(f"/v1/images/tasks/{task_id}").json()["data"]


async def agenerate(base_url):
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.post("/v1/images/tasks", json=BODY, headers={"Authorization": "Bearer k"})
        return r.json()["data"]


def test_own_client_on_the_public_transport(image_emulator):
    with httpx.Client(base_url=image_emulator.base_url, transport=image_emulator.transport,
                      headers={"Authorization": "Bearer mine"}) as client:
        assert client.post("/v1/images/tasks", json=BODY).status_code == 200
    # Closing a client of one's own leaves the emulator serving.
    assert image_emulator.client().post("/v1/images/tasks", json=BODY).status_code == 200
    assert len(image_emulator.tasks) == 2


@pytest.mark.asyncio
async def test_own_async_client_on_the_public_transport(image_emulator):
    async with httpx.AsyncClient(base_url=image_emulator.base_url,
                                 transport=image_emulator.async_transport) as client:
        r = await client.post("/v1/images/tasks", json=BODY, headers={"Authorization": "Bearer k"})
        assert r.status_code == 200
    image_emulator.assert_requested(times=1, endpoint="submit")


def test_intercept_routes_an_origin_to_the_emulator(image_emulator, image_emulator_live):
    image_emulator.intercept("https://relay.example")
    task = generate("https://relay.example")
    assert task["status"] == "queued"
    image_emulator.finish(task["task_id"])
    task = generate("https://relay.example")
    image_emulator.finish(task["task_id"])
    polled = httpx.get(f"https://relay.example/v1/images/tasks/{task['task_id']}",
                       headers={"Authorization": "Bearer sk-app"}).json()["data"]
    assert polled["result_url"].startswith("https://relay.example/_emulator/results/")
    assert httpx.get(polled["result_url"]).content.startswith(b"\\x89PNG")
    image_emulator.assert_requested(times=2, endpoint="submit")
    # Another origin is untouched: this one reaches the live server over the network.
    generate(image_emulator_live.base_url)
    assert len(image_emulator_live.tasks) == 1 and len(image_emulator.tasks) == 2


@pytest.mark.asyncio
async def test_intercept_async_clients_and_stop(image_emulator):
    with image_emulator.intercept("http://relay.example:8080") as interception:
        assert (await agenerate("http://relay.example:8080"))["status"] == "queued"
        assert generate("http://relay.example:8080")["status"] == "queued"
    assert not interception.active
    assert (httpx.HTTPTransport.handle_request,
            httpx.AsyncHTTPTransport.handle_async_request) == ORIGINAL
    image_emulator.assert_requested(times=2, endpoint="submit")


def test_intercept_refuses_what_is_not_an_origin(image_emulator):
    for bad in ("relay.example", "ftp://relay.example", "https://relay.example/api", ""):
        with pytest.raises(ValueError, match="origin|URL"):
            image_emulator.intercept(bad)
    image_emulator.intercept("https://relay.example")
    with pytest.raises(ValueError, match="already routed"):
        image_emulator.intercept("https://RELAY.example:443")


def test_interception_ends_with_its_test(image_emulator):
    image_emulator.intercept("https://relay.example", "https://other.example")


def test_nothing_is_intercepted_after_the_tests_that_did():
    assert (httpx.HTTPTransport.handle_request,
            httpx.AsyncHTTPTransport.handle_async_request) == ORIGINAL
"""


KEYS = """
import pytest

BODY = {"model": "NanoBanana", "prompt": "x"}


@pytest.mark.image_emulator(api_keys=["sk-only", "sk-second"])
def test_the_client_sends_the_first_of_api_keys(image_emulator):
    assert image_emulator.api_key == "sk-only"
    with image_emulator.client() as client:
        assert client.post("/v1/images/tasks", json=BODY).status_code == 200
    image_emulator.assert_requested(times=1, status=200)
    image_emulator.set_balance(0)  # the key its clients send
    with image_emulator.client() as client:
        assert client.post("/v1/images/tasks", json=BODY).status_code == 403


@pytest.mark.image_emulator(api_keys=["sk-only"])
@pytest.mark.asyncio
async def test_the_async_client_sends_the_first_of_api_keys(image_emulator):
    async with image_emulator.async_client() as client:
        assert (await client.post("/v1/images/tasks", json=BODY)).status_code == 200


@pytest.mark.image_emulator(api_keys=["sk-only"])
@pytest.mark.asyncio
async def test_headers_the_test_gives_win(image_emulator):
    for given in ({"Authorization": "Bearer sk-other"}, {"authorization": "Bearer sk-other"}):
        with image_emulator.client(headers=given) as client:
            assert client.post("/v1/images/tasks", json=BODY).status_code == 401
        async with image_emulator.async_client(headers=given) as client:
            assert (await client.post("/v1/images/tasks", json=BODY)).status_code == 401
    with image_emulator.client(headers={"X-Given": "1"}) as client:  # and the key still sent
        assert client.post("/v1/images/tasks", json=BODY).status_code == 200


@pytest.mark.image_emulator(api_keys=["sk-live"])
def test_the_live_fixtures_clients_too(image_emulator_live):
    assert image_emulator_live.api_key == "sk-live"
    with image_emulator_live.client() as client:
        assert client.post("/v1/images/tasks", json=BODY).status_code == 200


def test_keys_configured_later_and_a_key_of_the_tests_own(image_emulator):
    assert image_emulator.api_key == "sk-emulator-test"  # no api_keys: any key is accepted
    image_emulator.configure(api_keys=["sk-later"])
    with image_emulator.client() as client:
        assert client.post("/v1/images/tasks", json=BODY).status_code == 200
    image_emulator.api_key = "sk-mine"  # set by the test: sent as it is
    with image_emulator.client() as client:
        assert client.post("/v1/images/tasks", json=BODY).status_code == 401
"""


def test_the_fixtures_clients_send_a_key_the_emulator_accepts(pytester: pytest.Pytester) -> None:
    result = run(pytester, KEYS, "-o", "asyncio_default_fixture_loop_scope=function")
    result.assert_outcomes(passed=5)


def test_public_transports_and_interception(pytester: pytest.Pytester) -> None:
    result = run(pytester, INTERCEPTION, "-o", "asyncio_default_fixture_loop_scope=function")
    result.assert_outcomes(passed=7)


def test_the_fixtures_clients_keep_and_send_cookies_an_answer_sets(image_emulator: Any) -> None:
    # The clients' store skips an answer that sets no cookie (emulator/testing/handle.py):
    # an answer that sets one is kept, and sent back, as by httpx's own jar.
    image_emulator.respond(200, json={}, headers={"Set-Cookie": "session=abc; Path=/"}, times=1)
    for client in (image_emulator.client(), image_emulator.client(cookies={"given": "1"})):
        with client:
            client.get("/v1/images/tasks/task_x")  # the rule's answer, for the first client
            assert client.get("/v1/images/tasks/task_x").status_code == 404  # sets none
            assert client.cookies.get("session") == (
                "abc" if "given" not in client.cookies else None
            )
    sent = [entry["headers"].get("cookie") for entry in image_emulator.requests()]
    # The journal masks the Cookie header (a secret): compared as it masks them.
    given, session = mask_header("cookie", "given=1"), mask_header("cookie", "session=abc")
    assert sent == [None, session, given, given]


class _SpyJar(CookieJar):
    """A user's own jar that notes the path of each answer handed to it."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[str] = []

    def extract_cookies(self, response: Any, request: Any) -> None:
        self.handed.append(request.get_full_url().rsplit("/", 1)[1])
        super().extract_cookies(response, request)


def _set_cookies_twice(image_emulator: Any) -> None:
    image_emulator.respond(200, json={}, headers={"Set-Cookie": "a=1; Path=/"}, times=1)
    image_emulator.respond(200, json={}, headers={"set-cookie2": 'b=2; Version="1"'}, times=1)


# httpx wraps every answer for its jar (~22 µs); the fixture's clients skip an answer that
# sets no cookie (emulator/testing/handle.py). These fail if httpx stops reading its store
# through the `cookies` property: every answer would reach the jar.
def test_the_fixtures_client_hands_its_jar_only_answers_that_set_cookies(
    image_emulator: Any,
) -> None:
    _set_cookies_twice(image_emulator)
    jar = _SpyJar()
    with image_emulator.client(cookies=jar) as client:
        codes = [client.get(f"/v1/images/tasks/task_{n}").status_code for n in range(3)]
        assert client.cookies.jar is jar and client.cookies.get("a") == "1"
    assert codes == [200, 200, 404] and jar.handed == ["task_0", "task_1"]


@pytest.mark.asyncio
async def test_the_fixtures_async_client_hands_its_jar_only_answers_that_set_cookies(
    image_emulator: Any,
) -> None:
    _set_cookies_twice(image_emulator)
    jar = _SpyJar()
    async with image_emulator.async_client(cookies=jar) as client:
        codes = [(await client.get(f"/v1/images/tasks/task_{n}")).status_code for n in range(3)]
        assert client.cookies.jar is jar and client.cookies.get("a") == "1"
    assert codes == [200, 200, 404] and jar.handed == ["task_0", "task_1"]


def test_cookies_given_to_a_fixture_client_after_it_is_made_are_sent(image_emulator: Any) -> None:
    # httpx's clients must read their store through `cookies` when they send, too: the
    # fixture's clients keep theirs behind that property (emulator/testing/handle.py).
    with image_emulator.client() as client:
        client.cookies = {"later": "1"}
        client.get("/v1/images/tasks/task_x")
    [entry] = image_emulator.requests()
    assert entry["headers"].get("cookie") == mask_header("cookie", "later=1")


@pytest.mark.asyncio
async def test_cookies_given_to_a_fixture_async_client_after_it_is_made_are_sent(
    image_emulator: Any,
) -> None:
    async with image_emulator.async_client() as client:
        client.cookies = {"later": "2"}
        await client.get("/v1/images/tasks/task_x")
    [entry] = image_emulator.requests()
    assert entry["headers"].get("cookie") == mask_header("cookie", "later=2")


def test_the_fixtures_clients_send_the_query_they_are_given(image_emulator: Any) -> None:
    for client, sent in (
        (image_emulator.client(), b""),
        (image_emulator.client(params={"a": "1"}), b"a=1"),
    ):
        with client:
            assert str(client.params) == sent.decode()
            client.get("/v1/images/tasks/task_x")
            client.get("/v1/images/tasks/task_x", params={"b": "é"})
    queries = [entry["query"] for entry in image_emulator.requests()]
    assert queries == ["", "b=%C3%A9", "a=1", "a=1&b=%C3%A9"]


#: URL strings a test may pass, relative and absolute (each sent twice: the fixture's clients
#: remember what a string merged with their base URL gave, emulator/testing/handle.py).
URLS = [
    "/v1/images/tasks",
    "v1/images/tasks/task_x",
    "/v1/images/tasks/task_x?a=1&b=%C3%A9",
    "/a b/é/%2F?q=1 2#fragment",
    "",
    "?only=query",
    "//other.test/path",
    "http://other.test/x?y=1",
    "https://image-emulator.test:8443/v1/images/tasks/task_x",
]


def _urls_built(client: Any, **kwargs: Any) -> list[str]:
    return [str(client.build_request("GET", url, **kwargs).url) for url in URLS * 2]


def test_the_fixtures_clients_build_the_urls_httpx_builds(image_emulator: Any) -> None:
    plain = httpx.Client(base_url=image_emulator.base_url)
    other = httpx.Client(base_url="http://elsewhere.test/api")
    assert _urls_built(image_emulator.async_client()) == _urls_built(plain)
    for kwargs in ({}, {"params": {"p": "1"}}):
        with image_emulator.client(**kwargs) as client:
            assert _urls_built(client) == _urls_built(plain, **kwargs)
            assert _urls_built(client, params={"b": "2"}) == _urls_built(
                plain, params={**kwargs.get("params", {}), "b": "2"}
            )
            client.base_url = "http://elsewhere.test/api"  # a base changed after it is made
            assert _urls_built(client) == _urls_built(other, **kwargs)
    with image_emulator.client(base_url="http://elsewhere.test/api") as client:
        assert _urls_built(client) == _urls_built(other)
    plain.close()
    other.close()


def test_the_fixtures_clients_send_to_the_url_httpx_builds(image_emulator: Any) -> None:
    base = "http://image-emulator.test"
    with image_emulator.client() as client:
        for _ in range(2):
            answer = client.get("/v1/images/tasks/task_x?a=1")
            assert str(answer.request.url) == f"{base}/v1/images/tasks/task_x?a=1"
            assert client.get(f"{base}/v1/images/tasks/task_y").status_code == 404
    sent = [(entry["path"], entry["query"]) for entry in image_emulator.requests()]
    assert sent == [("/v1/images/tasks/task_x", "a=1"), ("/v1/images/tasks/task_y", "")] * 2


def test_a_url_sent_with_a_query_added_is_sent_later_without_it(image_emulator: Any) -> None:
    url = "/v1/images/tasks/task_sent_with_parameters_first"  # in no other test of this process
    with image_emulator.client(params={"p": "1"}) as given, image_emulator.client() as bare:
        assert str(given.build_request("GET", url).url).endswith(f"{url}?p=1")
        assert str(bare.build_request("GET", url, params={"q": "2"}).url).endswith(f"{url}?q=2")
        assert str(bare.build_request("GET", url).url) == f"{image_emulator.base_url}{url}"


def test_the_fixtures_clients_send_its_key_and_the_headers_they_are_given(
    image_emulator: Any,
) -> None:
    clients = [image_emulator.client(), image_emulator.client(headers={"X-Given": "1"})]
    image_emulator.api_key = "sk-another"
    clients.append(image_emulator.client())
    for client in clients:
        with client:
            assert client.get("/v1/images/tasks/task_x").status_code == 404
    sent = [entry["headers"] for entry in image_emulator.requests()]
    assert [h.get("x-given") for h in sent] == [None, "1", None]
    keys = [h["authorization"] for h in sent]
    assert keys[0] == keys[1] == mask_header("authorization", "Bearer sk-emulator-test")
    assert keys[2] == mask_header("authorization", "Bearer sk-another")
