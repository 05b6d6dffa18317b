"""``GET /_emulator/tasks`` in pages: bounded whatever is stored, with a cursor that never lies.

The store contract (tests/store_contract.py) walks 2,500 tasks by pages on every backend; here
the route, its refusals and the fixture handle's walk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from emulator import Settings, create_app
from emulator.stores import Store
from emulator.testing.app_loop import AppLoop
from emulator.testing.handle import ImageEmulator
from emulator.usecases import sweep

from .conftest import Client, MakeClient

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}
GPT = {"model": "gpt-image-2", "prompt": "a dog", "size": "1024x1024"}


def listed(client: Client, **params: Any) -> Any:
    response = client.get("/_emulator/tasks", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(body: dict[str, Any]) -> list[str]:
    return [view["task"]["task_id"] for view in body["tasks"]]


def test_a_page_holds_limit_tasks_and_next_leads_to_the_rest(client: Client) -> None:
    submitted = [client.submit_ok(NANO) for _ in range(5)]
    first = listed(client, limit=2)
    assert ids(first) == submitted[:2] and isinstance(first["next"], str)
    second = listed(client, limit=2, after=first["next"])
    assert ids(second) == submitted[2:4] and isinstance(second["next"], str)
    last = listed(client, limit=2, after=second["next"])
    assert ids(last) == submitted[4:] and last["next"] is None
    whole = listed(client)  # default limit: 1000
    assert ids(whole) == submitted and whole["next"] is None
    assert client.head("/_emulator/tasks", params={"limit": 2}).status_code == 200


def _counting(store: Store) -> list[int]:
    """Instrument ``store``: how many tasks each listing read returned (the tasks a request
    examined), whichever read it used."""
    read: list[int] = []
    for name in ("list_tasks", "task_page"):
        method = getattr(store, name, None)
        if method is None:
            continue

        async def counted(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            result = await _method(*args, **kwargs)
            tasks = result if isinstance(result, list) else getattr(result, "tasks", [])
            read.append(len(tasks))
            return result

        setattr(store, name, counted)
    return read


def test_a_filter_that_matches_nothing_reads_one_bounded_page(make_client: MakeClient) -> None:
    client = make_client()
    for _ in range(1_200):
        client.submit_ok(NANO)
    client.submit_ok(GPT)  # the one match, the last of 1,201
    read = _counting(client.app.state.emulator.store)  # type: ignore[attr-defined]
    body = listed(client, model="gpt-image-2", limit=100)
    assert body["tasks"] == [] and isinstance(body["next"], str)
    assert sum(read) <= 101  # the page's tasks (and one to tell that more follow), not 1,201
    read.clear()
    body = listed(client, model="gpt-image-2", status="queued")
    assert body["tasks"] == [] and isinstance(body["next"], str) and sum(read) <= 1_001
    nothing = listed(client, model="nobody", limit=1000, after=body["next"])
    assert nothing == {"tasks": [], "next": None}
    found = listed(client, model="gpt-image-2", after=body["next"])
    assert len(found["tasks"]) == 1 and found["next"] is None


def test_a_cursor_from_before_a_reset_is_refused_with_404_naming_after(client: Client) -> None:
    for _ in range(3):
        client.submit_ok(NANO)
    cursor = listed(client, limit=1)["next"]
    assert client.post("/_emulator/reset").status_code == 200
    for _ in range(3):  # the same ids again: the seed's stream restarts at a reset
        client.submit_ok(NANO)
    response = client.get("/_emulator/tasks", params={"after": cursor})
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["code"] == "cursor_expired" and body["data"] is None
    assert "after" in body["message"] and "list again from the start" in body["message"]
    assert client.head("/_emulator/tasks", params={"after": cursor}).status_code == 404


def test_a_cursor_whose_task_expired_is_refused_with_404(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "SWEEP_EVERY", 1)
    client = make_client(task_ttl_seconds=10)
    for _ in range(3):
        client.submit_ok(NANO)
    cursor = listed(client, limit=1)["next"]
    client.advance(1_000)
    client.submit_ok(NANO)  # a submission sweeps what expired
    assert client.get("/_emulator/tasks", params={"after": cursor}).status_code == 404


@pytest.mark.parametrize(
    ("params", "named", "rule"),
    [
        ({"limit": "0"}, "limit", "from 1 to 1000"),
        ({"limit": "1001"}, "limit", "from 1 to 1000"),
        ({"limit": "-1"}, "limit", "from 1 to 1000"),
        ({"limit": "1.5"}, "limit", "from 1 to 1000"),
        ({"limit": "ten"}, "limit", "from 1 to 1000"),
        ({"limit": ""}, "limit", "from 1 to 1000"),
        ({"limit": "99999999999999999999"}, "limit", "from 1 to 1000"),
        ({"after": "task_0"}, "after", "'next' of an earlier page"),
        ({"after": ""}, "after", "'next' of an earlier page"),
        ({"after": "1." + "a" * 129}, "after", "'next' of an earlier page"),
        ({"after": "1234567890123456.task_x"}, "after", "'next' of an earlier page"),
        ({"after": "1.task é"}, "after", "'next' of an earlier page"),
        ([("limit", "2"), ("limit", "3")], "limit", "only once"),
        ([("after", "1.task_a"), ("after", "1.task_a")], "after", "only once"),
    ],
)
def test_a_bad_limit_or_after_is_a_400_naming_it(
    client: Client, params: Any, named: str, rule: str
) -> None:
    client.submit_ok(NANO)
    response = client.get("/_emulator/tasks", params=params)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert named in message and rule in message


def test_a_well_formed_cursor_of_no_task_is_404(client: Client) -> None:
    client.submit_ok(NANO)
    response = client.get("/_emulator/tasks", params={"after": f"7.task_{'0' * 32}"})
    assert response.status_code == 404


@pytest.fixture
def handle() -> Iterator[ImageEmulator]:
    app = create_app(Settings(seed=1, clock="manual"))
    loop = AppLoop()
    handle = ImageEmulator(app, loop, "http://image-emulator.test", in_process=True)
    yield handle
    handle.close()
    loop.close(last=app.state.emulator.store.close())


def test_the_handle_lists_all_2500_tasks_once_in_order(handle: ImageEmulator) -> None:
    with handle.client() as client:
        submitted = [
            client.post("/v1/images/tasks", json=NANO).json()["data"]["task_id"]
            for _ in range(2_500)
        ]
    read = _counting(handle.emulator.store)
    tasks = handle.tasks
    assert [view["task"]["task_id"] for view in tasks] == submitted
    assert max(read) <= 1_000  # read a page at a time


def test_the_handle_says_so_when_tasks_go_while_it_walks(handle: ImageEmulator) -> None:
    from emulator.usecases.pages import CursorGone  # here: the other tests run on any version

    with handle.client() as client:
        for _ in range(1_001):
            client.post("/v1/images/tasks", json=NANO)
    store = handle.emulator.store
    page = store.task_page

    async def reset_after_the_first_page(*args: Any, **kwargs: Any) -> Any:
        found = await page(*args, **kwargs)
        await store.reset()  # the task the first page ended at is gone
        return found

    store.task_page = reset_after_the_first_page  # type: ignore[method-assign]
    with pytest.raises(CursorGone, match="tasks changed while they were listed"):
        _ = handle.tasks
