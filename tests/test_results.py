"""Result URLs are capabilities (SPEC D-14): the seed and every task id name no picture."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from .conftest import Client

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a private picture"}
RESULT_URL = re.compile(
    r"^http://testserver/_emulator/results/(task_[0-9a-f]{32})/([A-Za-z0-9_-]{32,})/0\.png$"
)


def test_same_seed_gives_the_same_ids_and_pictures_but_never_the_same_urls(
    make_client: Any,
) -> None:
    first, second = make_client(seed=99), make_client(seed=99)
    a, b = first.run_to_end(NANO), second.run_to_end(NANO)
    assert a["task_id"] == b["task_id"]
    assert a["result_url"] != b["result_url"]
    assert first.get(a["result_url"]).content == second.get(b["result_url"]).content
    # Each URL works only on the emulator that handed it out.
    assert first.get(b["result_url"]).status_code == 404
    assert second.get(a["result_url"]).status_code == 404


def test_result_url_carries_a_token_besides_the_task_id(client: Client) -> None:
    task = client.run_to_end(NANO)
    match = RESULT_URL.match(task["result_url"])
    assert match is not None, task["result_url"]
    assert match.group(1) == task["task_id"]
    assert task["task_id"][5:] not in match.group(2)


def test_the_bare_id_path_serves_no_picture(client: Client) -> None:
    task = client.run_to_end(NANO)
    response = client.get(f"/_emulator/results/{task['task_id']}/0.png")
    assert response.status_code == 404
    assert response.json()["code"] in ("not_found", "task_not_found")


def test_knowing_the_seed_and_predicting_every_id_yields_no_picture(make_client: Any) -> None:
    owner = make_client(seed=4242)
    mine = owner.run_to_end(NANO)
    # A stranger with the seed rebuilds the id sequence exactly...
    predicted = f"task_{random.Random(4242).getrandbits(128):032x}"
    assert predicted == mine["task_id"]
    # ...and still cannot name the picture: every guess of the token is a 404.
    stranger = {"Authorization": "Bearer sk-stranger"}
    guesses = ["0" * 32, predicted[5:], "4242" + "0" * 28, "a" * 43]
    for guess in guesses:
        url = f"/_emulator/results/{predicted}/{guess}/0.png"
        assert owner.get(url, headers=stranger).status_code == 404, url
    assert owner.get(f"/_emulator/results/{predicted}/0.png").status_code == 404
    assert owner.get(mine["result_url"], headers=stranger).status_code == 200


def test_a_wrong_token_answers_like_an_unknown_task(client: Client) -> None:
    task = client.run_to_end(NANO)
    good = task["result_url"]
    base, token, name = good.rsplit("/", 2)
    wrong = client.get(f"{base}/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}/{name}")
    unknown = client.get(f"/_emulator/results/task_{'f' * 32}/{token}/{name}")
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json()["code"] == unknown.json()["code"] == "task_not_found"


def test_every_url_of_a_task_shares_its_token_and_differs_by_index(client: Client) -> None:
    task = client.run_to_end({"model": "gpt-image-2", "prompt": "x", "size": "1024x1024", "n": 3})
    urls = task["metadata"]["result_urls"]
    assert [u.rsplit("/", 1)[1] for u in urls] == ["0.png", "1.png", "2.png"]
    assert len({u.rsplit("/", 1)[0] for u in urls}) == 1
    for url in urls:
        assert client.get(url).status_code == 200


def test_admin_view_lists_the_same_capability_urls(client: Client) -> None:
    task = client.run_to_end(NANO)
    view = client.get(f"/_emulator/tasks/{task['task_id']}").json()
    assert view["result_urls"] == [task["result_url"]]


def test_health_shows_the_seed_only_with_the_admin_token(make_client: Any) -> None:
    client = make_client(admin_token="s3cret")
    anonymous = client.get("/_emulator/health")
    assert anonymous.status_code == 200
    assert "seed" not in anonymous.json()
    assert client.get("/_emulator/health", headers={"X-Emulator-Token": "wrong"}).json().keys() == (
        anonymous.json().keys()
    )
    admin = client.get("/_emulator/health", headers={"X-Emulator-Token": "s3cret"})
    assert admin.json()["seed"] == 1234


def test_health_shows_the_seed_when_the_control_plane_is_open(client: Client) -> None:
    assert client.get("/_emulator/health").json()["seed"] == 1234


@pytest.mark.parametrize("name", ["\u00b2", "\u0663", "\U0001d7d8", "0x0", "-0", "00000"])
def test_result_index_of_non_ascii_digits_is_a_404_not_a_500(client: Client, name: str) -> None:
    task = client.run_to_end(NANO)
    base = task["result_url"].rsplit("/", 1)[0]
    response = client.get(f"{base}/{name}.png")
    assert response.status_code == 404, response.status_code
    legacy = client.get(f"/_emulator/results/{task['task_id']}/{name}.png")
    assert legacy.status_code == 404, legacy.status_code


def test_downloads_waiting_for_a_render_slot_hold_no_worker_thread() -> None:
    """Every SQLite call needs one of anyio's worker threads: a crowd of downloads waiting for
    the two render slots must not hold them (it held all 40, and polls waited seconds)."""
    import anyio
    import anyio.lowlevel
    import anyio.to_thread
    import httpx

    from emulator import Settings, create_app

    app = create_app(Settings(seed=7, clock="real", time_scale=0, render_cache_bytes=0))
    auth = {"Authorization": "Bearer sk-renders"}

    async def main() -> int:
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = 8  # a smaller pool than anyio's 40, so a dozen downloads fill it
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            urls = []
            for i in range(12):
                payload = {"model": "NanoBananaPro-8K", "prompt": f"picture {i}"}
                created = await client.post("/v1/images/tasks", json=payload, headers=auth)
                task_id = created.json()["data"]["task_id"]
                polled = await client.get(f"/v1/images/tasks/{task_id}", headers=auth)
                urls.append(polled.json()["data"]["result_url"])
            most_held = 0
            pending = len(urls)

            async def download(url: str) -> None:
                nonlocal pending
                assert (await client.get(url)).status_code == 200
                pending -= 1

            async with anyio.create_task_group() as group:
                for url in urls:
                    group.start_soon(download, url)
                with anyio.fail_after(60):
                    while pending:  # how many worker threads the downloads hold, at each turn
                        most_held = max(most_held, limiter.borrowed_tokens)
                        await anyio.lowlevel.checkpoint()
            return most_held

    # The two render slots' threads, never more: the rest wait without a thread.
    assert anyio.run(main) <= 2


def test_a_reference_to_our_result_with_a_wrong_token_is_not_resolved(client: Client) -> None:
    done = client.run_to_end(NANO)
    base, token, name = done["result_url"].rsplit("/", 2)
    forged = f"{base}/{'A' * 32 if token != 'A' * 32 else 'B' * 32}/{name}"
    genuine = client.submit_ok(NANO | {"image": done["result_url"]})
    guessed = client.submit_ok(NANO | {"image": forged})
    views = [client.get(f"/_emulator/tasks/{i}").json()["task"] for i in (genuine, guessed)]
    # The genuine URL is resolved to our picture (D-11); the forged one stays an opaque URL.
    assert [view["has_reference"] for view in views] == [True, False]


@pytest.mark.parametrize(
    "effect", [{"kind": "http_error", "status": 503}, {"kind": "drop"}, {"kind": "empty"}]
)
def test_a_fault_on_results_answers_before_the_picture_is_drawn(
    client: Client, effect: dict[str, Any]
) -> None:
    # A result may be an 8K picture: a rule that answers instead (an error, a dropped
    # connection) must not pay for drawing it; the rule is decided first, the picture after.
    task = client.run_to_end({**NANO, "prompt": "never drawn"})
    rule = {"effect": effect, "match": {"endpoint": "result"}, "times": 1}
    assert client.post("/_emulator/faults", json=rule).status_code == 201
    renders = client.app.state.emulator.results.renders  # type: ignore[attr-defined]
    try:
        response = client.get(task["result_url"])
        answered = response.status_code
    except Exception:  # the dropped connection: no answer at all
        answered = 0
    assert answered in (503, 0) or response.content == b""
    if effect["kind"] in ("http_error", "drop"):
        assert len(renders) == 0  # nothing drawn for an answer that carries no picture
    # The rule is spent; the next download draws the picture.
    assert client.get(task["result_url"]).status_code == 200
    assert len(renders) == 1


def test_a_picture_is_kept_once_per_task_whatever_its_polls(client: Client) -> None:
    # The emulator's picture cache is keyed by the task but its poll count: downloads between
    # polls find the picture kept; another task's picture is kept apart.
    renders = client.app.state.emulator.results.renders  # type: ignore[attr-defined]
    first = client.run_to_end({**NANO, "prompt": "kept once"})
    pictures = set()
    for _ in range(3):
        pictures.add(client.get(first["result_url"]).content)
        client.task(first["task_id"])  # one more poll
    assert len(pictures) == 1 and len(renders) == 1
    second = client.run_to_end({**NANO, "prompt": "kept apart"})
    assert client.get(second["result_url"]).content not in pictures
    assert len(renders) == 2


#: Names of result 1 (or 0) that are not the one the emulator hands out.
NOT_CANONICAL = ["01.jpeg", "001.jpeg", "00.jpeg", "+1.jpeg", " 1.jpeg", "1_0.jpeg", "1.0.jpeg"]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("name", NOT_CANONICAL)
def test_a_result_has_one_url_and_any_other_name_is_a_404(
    client: Client, name: str, method: str
) -> None:
    task = client.run_to_end(
        {
            "model": "gpt-image-2",
            "prompt": "x",
            "size": "1024x1024",
            "n": 2,
            "output_format": "jpeg",
        }
    )
    urls = task["metadata"]["result_urls"]
    base = urls[0].rsplit("/", 1)[0]
    assert [url.rsplit("/", 1)[1] for url in urls] == ["0.jpeg", "1.jpeg"]
    for url in urls:  # what was handed out is served...
        assert client.request(method, url).status_code == 200
    # ...and nothing else names the same picture: a 404, as for any unknown name.
    response = client.request(method, f"{base}/{name}")
    assert response.status_code == 404, name
    if method == "GET":
        assert response.json()["code"] == "task_not_found"


def test_a_reference_naming_our_result_by_another_name_is_not_resolved(client: Client) -> None:
    done = client.run_to_end(NANO)
    other = done["result_url"].replace("/0.png", "/00.png")
    genuine = client.submit_ok(NANO | {"image": done["result_url"]})
    renamed = client.submit_ok(NANO | {"image": other})
    views = [client.get(f"/_emulator/tasks/{i}").json()["task"] for i in (genuine, renamed)]
    # Resolved locally only by the URL the emulator hands out (D-11): the other is opaque.
    assert [view["has_reference"] for view in views] == [True, False]
