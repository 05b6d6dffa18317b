"""``GET /_emulator/tasks`` in pages: bounded whatever is stored, with a cursor that never lies.

The store contract (tests/store_contract.py) walks 2,500 tasks by pages on every backend; here
the route, its refusals and the fixture handle's walk.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from emulator import Settings, create_app
from emulator.testing.handle import ImageEmulator
from emulator.usecases import sweep

from .conftest import AUTH, Client, MakeClient
from .listings import counting
from .redis_server import RedisServer, running_redis
from .store_support import make_task, place

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


def test_a_filter_that_matches_nothing_reads_one_bounded_page(make_client: MakeClient) -> None:
    client = make_client()
    for _ in range(1_200):
        client.submit_ok(NANO)
    client.submit_ok(GPT)  # the one match, the last of 1,201
    store = client.app.state.emulator.store  # type: ignore[attr-defined]
    read = counting(store, "list_tasks", "task_page")
    body = listed(client, model="gpt-image-2", limit=100)
    assert body["tasks"] == [] and isinstance(body["next"], str)
    assert sum(read) <= 101  # the page's tasks (and one to tell that more follow), not 1,201
    read.clear()
    body = listed(client, model="gpt-image-2", status="queued")
    assert body["tasks"] == [] and isinstance(body["next"], str) and sum(read) <= 1_001
    nothing = listed(client, model="NanoBananaPro-8K", limit=1000, after=body["next"])
    assert nothing == {"tasks": [], "next": None}
    found = listed(client, model="gpt-image-2", after=body["next"])
    assert len(found["tasks"]) == 1 and found["next"] is None


def walk(client: Client, after: str | None, **params: Any) -> list[str]:
    """The ids of every page from the one after ``after`` on."""
    found: list[str] = []
    while True:
        body = listed(client, **params, **({"after": after} if after else {}))
        found += ids(body)
        after = body["next"]
        if after is None:
            return found


def test_a_cursor_from_before_a_reset_goes_on_with_the_tasks_submitted_after(
    client: Client,
) -> None:
    for _ in range(3):
        client.submit_ok(NANO)
    cursor = listed(client, limit=1)["next"]
    assert client.post("/_emulator/reset").status_code == 200
    # The same ids again (the seed's stream restarts at a reset), numbered after the cursor.
    again = [client.submit_ok(NANO) for _ in range(3)]
    assert walk(client, cursor, limit=2) == again


def test_a_cursor_whose_task_expired_leads_to_the_tasks_after_it(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "SWEEP_EVERY", 1)
    client = make_client(task_ttl_seconds=10)
    for _ in range(3):
        client.submit_ok(NANO)
    cursor = listed(client, limit=1)["next"]
    client.advance(1_000)
    late = client.submit_ok(NANO)  # a submission sweeps what expired
    assert walk(client, cursor) == [late]


def test_a_walk_goes_on_while_eviction_removes_the_tasks_it_passed(
    make_client: MakeClient,
) -> None:
    # The reviewer's case, scaled down: a full store (max_tasks 300), the first page of 100,
    # then 200 submissions that evict the oldest (the first page's among them): the next page
    # lists exactly the stored tasks after the cursor.
    client = make_client(max_tasks=300)
    submitted = [client.submit_ok(NANO) for _ in range(300)]
    client.advance(3_600)  # all finished: eviction may take them (an hour: none expired)
    first = listed(client, limit=100)
    assert ids(first) == submitted[:100] and first["next"]
    submitted += [client.submit_ok(NANO) for _ in range(200)]
    stored = walk(client, None, limit=100)  # from the first: what is stored now, oldest first
    assert len(stored) <= 300
    assert submitted[99] not in stored  # the cursor's task was evicted
    after_cursor = [i for i in stored if submitted.index(i) >= 100]
    second = listed(client, limit=100, after=first["next"])
    assert ids(second) == after_cursor[:100]
    assert walk(client, first["next"], limit=100) == after_cursor


def test_a_cursor_of_a_restarted_emulator_is_refused_with_404_naming_after(
    make_client: MakeClient,
) -> None:
    before = make_client()
    for _ in range(3):
        before.submit_ok(NANO)
    cursor = listed(before, limit=1)["next"]
    restarted = make_client()  # another memory store: its numbering starts again
    for _ in range(3):  # the same seed: the same ids
        restarted.submit_ok(NANO)
    response = restarted.get("/_emulator/tasks", params={"after": cursor})
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["code"] == "cursor_expired" and body["data"] is None
    message = body["message"]
    assert "after" in message and "numbering started again" in message
    assert "list again from the start" in message
    assert restarted.head("/_emulator/tasks", params={"after": cursor}).status_code == 404


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running_redis()


def _wipe(url: str, prefix: str) -> None:
    """Delete every key of ``prefix`` (its task counter and epoch among them)."""
    client = redis.Redis.from_url(url)
    try:
        doomed = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if doomed:
            client.delete(*doomed)
    finally:
        client.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_cursor_survives_a_restart_on_the_same_state_and_not_a_new_numbering(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # The same SQLite file, the same Redis prefix: the numbering (epoch and all) goes on, so a
    # cursor from before a restart lists the tasks after it. Another file, a wiped prefix:
    # the numbering started again, and the same cursor is the 404.
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = uuid.uuid4().hex
        same = {"store": server.url, "store_prefix": prefix}
    else:
        same = {"store": f"sqlite:///{tmp_path}/state.db"}

    def emulator(overrides: dict[str, Any]) -> Client:
        return Client(
            create_app(Settings(seed=1234, clock="manual").replace(**overrides)), headers=AUTH
        )

    with emulator(same) as client:
        first = [client.submit_ok(NANO) for _ in range(3)]
        cursor = listed(client, limit=1)["next"]
    with emulator(same) as client:  # restarted on the same state
        assert walk(client, cursor) == first[1:]
    if backend == "redis":
        _wipe(server.url, prefix)
        other = same
    else:
        other = {"store": f"sqlite:///{tmp_path}/other.db"}
    with emulator(other) as client:
        assert [client.submit_ok(NANO) for _ in range(3)] == first  # the same ids again
        response = client.get("/_emulator/tasks", params={"after": cursor})
        assert response.status_code == 404, response.text
        body = response.json()
        assert body["code"] == "cursor_expired" and "numbering started again" in body["message"]
        assert walk(client, None) == first
    if backend == "redis":
        _wipe(server.url, prefix)


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
        ({"after": f"1.task_{'0' * 32}"}, "after", "'next' of an earlier page"),
        ({"after": "1." + "a" * 17}, "after", "'next' of an earlier page"),
        ({"after": "1." + "A" * 16}, "after", "'next' of an earlier page"),
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


def test_a_well_formed_cursor_of_another_numbering_is_404(client: Client) -> None:
    client.submit_ok(NANO)
    response = client.get("/_emulator/tasks", params={"after": f"7.{'0' * 16}"})
    assert response.status_code == 404
    assert response.json()["code"] == "cursor_expired"


def test_the_contract_declares_every_listing_parameter_on_the_head_and_the_get() -> None:
    from emulator.contract import load_contract
    from emulator.http.admin import TASK_PARAMETERS

    item = load_contract("emulator")["paths"]["/_emulator/tasks"]
    shared = item.get("parameters", [])
    for method in ("head", "get"):
        declared = [*shared, *item[method].get("parameters", [])]
        refs = load_contract("emulator")["components"]["parameters"]
        names = [
            p["name"] if "name" in p else refs[p["$ref"].rsplit("/", 1)[-1]]["name"]
            for p in declared
        ]
        assert sorted(names) == sorted(TASK_PARAMETERS), method


def test_the_handle_lists_all_2500_tasks_once_in_order(handle: ImageEmulator) -> None:
    with handle.client() as client:
        submitted = [
            client.post("/v1/images/tasks", json=NANO).json()["data"]["task_id"]
            for _ in range(2_500)
        ]
    read = counting(handle.emulator.store, "list_tasks", "task_page")
    tasks = handle.tasks
    assert [view["task"]["task_id"] for view in tasks] == submitted
    assert max(read) <= 1_000  # read a page at a time


def test_the_handle_walks_on_when_the_store_is_reset_between_two_pages(
    handle: ImageEmulator,
) -> None:
    with handle.client() as client:
        for _ in range(1_001):
            client.post("/v1/images/tasks", json=NANO)
    store = handle.emulator.store
    page = store.task_page
    later: list[str] = []

    async def reset_after_the_first_page(*args: Any, **kwargs: Any) -> Any:
        found = await page(*args, **kwargs)
        if not later:
            await store.reset()  # the task the first page ended at is gone; two new follow
            for i in range(2):
                await place(store, make_task(i))
                later.append(make_task(i).task_id)
        return found

    store.task_page = reset_after_the_first_page  # type: ignore[method-assign]
    tasks = handle.tasks
    assert [view["task"]["task_id"] for view in tasks][1_000:] == later


def test_the_handle_says_so_when_the_numbering_starts_again_while_it_walks(
    handle: ImageEmulator,
) -> None:
    from emulator.stores.memory import MemoryStore
    from emulator.usecases.pages import CursorGone  # here: the other tests run on any version

    with handle.client() as client:
        for _ in range(1_001):
            client.post("/v1/images/tasks", json=NANO)
    store = handle.emulator.store
    first = store.task_page
    restarted = MemoryStore()  # as if the emulator restarted between the two pages
    calls: list[object] = []

    async def restarted_after_the_first_page(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        read = first if len(calls) == 1 else restarted.task_page
        return await read(*args, **kwargs)

    store.task_page = restarted_after_the_first_page  # type: ignore[method-assign]
    with pytest.raises(CursorGone, match="numbering started again"):
        _ = handle.tasks
