"""``GET /_emulator/usage`` in pages, with totals from the stores' running sums: bounded in cost
however long the usage log, with the same totals as the whole-list formula.

The store contract (tests/usage_contract.py) walks 2,500 charges by pages on every backend;
tests/test_usage_totals.py checks the sums against the formula under random steps. Here the
route, its refusals, the handle's walk and the dashboard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulator import Settings, create_app
from emulator.testing.handle import ImageEmulator

from .conftest import AUTH, Client, MakeClient
from .listings import counting
from .old_stores import sqlite_file_of

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}
GPT = {"model": "gpt-image-2", "prompt": "a dog", "size": "1024x1024"}


def usage(client: Client, **params: Any) -> Any:
    response = client.get("/_emulator/usage", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(body: dict[str, Any]) -> list[str]:
    return [entry["task_id"] for entry in body["entries"]]


def test_a_usage_page_holds_limit_entries_and_next_leads_to_the_rest(client: Client) -> None:
    submitted = [client.submit_ok(NANO) for _ in range(5)]
    first = usage(client, limit=2)
    assert ids(first) == submitted[:2] and isinstance(first["next"], str)
    second = usage(client, limit=2, after=first["next"])
    assert ids(second) == submitted[2:4] and isinstance(second["next"], str)
    last = usage(client, limit=2, after=second["next"])
    assert ids(last) == submitted[4:] and last["next"] is None
    whole = usage(client)
    assert ids(whole) == submitted and whole["next"] is None
    # Every page carries the totals of every charge, not of its own entries.
    assert first["totals"] == whole["totals"] and whole["totals"]["by_key"]
    assert sum(row["tasks"] for row in first["totals"]["by_model"].values()) == 5


def test_a_usage_filter_that_matches_nothing_reads_one_bounded_page(
    make_client: MakeClient,
) -> None:
    client = make_client()
    for _ in range(1_200):
        client.submit_ok(NANO)
    client.submit_ok(GPT)  # the one match, the last of 1,201
    store = client.app.state.emulator.store  # type: ignore[attr-defined]
    read = counting(store, "charge_page")
    body = usage(client, model="gpt-image-2", limit=100)
    assert body["entries"] == [] and isinstance(body["next"], str)
    assert sum(read) <= 100
    assert body["totals"]["by_model"]["gpt-image-2"]["tasks"] == 1  # the totals see it
    read.clear()
    body = usage(client, model="gpt-image-2", state="held")
    assert body["entries"] == [] and isinstance(body["next"], str) and sum(read) <= 1_000
    found = usage(client, model="gpt-image-2", after=body["next"])
    assert len(found["entries"]) == 1 and found["next"] is None
    one = usage(client, task_id=found["entries"][0]["task_id"], limit=1)
    assert one["entries"] == [] and one["next"]  # filters apply within the page
    assert one["totals"]["by_model"] == {"gpt-image-2": found["totals"]["by_model"]["gpt-image-2"]}


@pytest.mark.parametrize(
    ("params", "named", "rule"),
    [
        ({"limit": "0"}, "limit", "from 1 to 1000"),
        ({"limit": "1001"}, "limit", "from 1 to 1000"),
        ({"limit": "ten"}, "limit", "from 1 to 1000"),
        ({"limit": ""}, "limit", "from 1 to 1000"),
        ({"after": "task_0"}, "after", "'next' of an earlier page"),
        ({"after": ""}, "after", "'next' of an earlier page"),
        ({"after": "1." + "A" * 16}, "after", "'next' of an earlier page"),
        ([("limit", "2"), ("limit", "3")], "limit", "only once"),
        ({"page": "2"}, "page", "limit"),
    ],
)
def test_a_bad_usage_limit_or_after_is_a_400_naming_it(
    client: Client, params: Any, named: str, rule: str
) -> None:
    client.submit_ok(NANO)
    response = client.get("/_emulator/usage", params=params)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert named in message and rule in message


def test_a_usage_cursor_of_a_restarted_emulator_is_404_cursor_expired(
    make_client: MakeClient,
) -> None:
    before = make_client()
    for _ in range(3):
        before.submit_ok(NANO)
    cursor = usage(before, limit=1)["next"]
    restarted = make_client()  # another memory store: its numbering starts again
    for _ in range(3):
        restarted.submit_ok(NANO)
    response = restarted.get("/_emulator/usage", params={"after": cursor})
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["code"] == "cursor_expired" and "numbering of charges" in body["message"]
    assert restarted.get("/_emulator/usage", params={"after": f"7.{'0' * 16}"}).status_code == 404


def test_a_usage_cursor_goes_on_after_a_reset_and_past_trimmed_charges(
    make_client: MakeClient,
) -> None:
    client = make_client(usage_log_limit=1)
    first = [client.submit_ok(NANO) for _ in range(3)]
    cursor = usage(client, limit=1)["next"]
    client.advance(3_600)  # all end; settled by the next read, all but one trimmed
    kept = ids(usage(client))
    assert len(kept) == 1 and kept[0] in first
    assert ids(usage(client, after=cursor)) == [i for i in kept if i != first[0]]
    assert client.post("/_emulator/reset").status_code == 200
    again = [client.submit_ok(NANO) for _ in range(2)]
    assert ids(usage(client, after=cursor)) == again


def test_the_handle_lists_every_charge_of_2500_once_in_order_with_the_totals(
    handle: ImageEmulator,
) -> None:
    with handle.client() as client:
        submitted = [
            client.post("/v1/images/tasks", json=NANO).json()["data"]["task_id"]
            for _ in range(2_500)
        ]
    read = counting(handle.emulator.store, "charge_page")
    log = handle.usage
    assert set(log) == {"unit", "entries", "totals"}
    assert [entry["task_id"] for entry in log["entries"]] == submitted
    assert log["totals"]["by_model"]["NanoBanana2-0.5K"]["tasks"] == 2_500
    assert max(read) <= 1_000  # read a page at a time


def test_the_handle_says_so_when_the_charge_numbering_starts_again_while_it_walks(
    handle: ImageEmulator,
) -> None:
    from emulator.stores.memory import MemoryStore
    from emulator.usecases.pages import CursorGone

    with handle.client() as client:
        for _ in range(1_001):
            client.post("/v1/images/tasks", json=NANO)
    store = handle.emulator.store
    first = store.charge_page
    restarted = MemoryStore()
    calls: list[object] = []

    async def restarted_after_the_first_page(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        read = first if len(calls) == 1 else restarted.charge_page
        return await read(*args, **kwargs)

    store.charge_page = restarted_after_the_first_page  # type: ignore[method-assign]
    with pytest.raises(CursorGone, match="charge numbering started again"):
        _ = handle.usage


def test_the_dashboards_billing_page_reads_one_page_and_links_the_next(
    make_client: MakeClient,
) -> None:
    client = make_client()
    submitted = [client.submit_ok(NANO) for _ in range(450)]
    store = client.app.state.emulator.store  # type: ignore[attr-defined]
    read = counting(store, "charge_page")
    tails = counting(store, "charge_tail")
    # First the newest 200, newest first (as before the log was paged; the review found the
    # paged page opening on the oldest), read by the tail alone.
    page = client.get("/_emulator/ui/billing")
    assert page.status_code == 200, page.text[:300]
    assert tails == [200] and not read
    text = page.text
    assert submitted[-1] in text and submitted[250] in text and submitted[249] not in text
    assert text.index(submitted[-1]) < text.index(submitted[-2])  # newest first
    # Then the whole log, oldest first, a page at a time.
    page = client.get("/_emulator/ui/billing", params={"order": "oldest"})
    assert page.status_code == 200, page.text[:300]
    assert max(read) <= 200 and submitted[0] in page.text and submitted[200] not in page.text
    assert "Next page" in page.text
    task = client.get(f"/_emulator/ui/tasks/{submitted[300]}")
    assert task.status_code == 200 and "No charge is recorded" not in task.text
    assert max(read) <= 200  # the task's page read its own charge only


@pytest.mark.parametrize("version", [2, 3])
def test_the_app_serves_usage_on_a_sqlite_file_of_an_older_schema(
    tmp_path: Path, version: int
) -> None:
    settings = Settings(seed=1, clock="manual", store=f"sqlite:///{tmp_path}/s.db")
    with Client(create_app(settings), headers=AUTH) as client:
        client.submit_ok(NANO)
        before = usage(client)["totals"]
    sqlite_file_of(tmp_path / "s.db", version, [])  # as that version left it, nothing trimmed
    with Client(create_app(settings), headers=AUTH) as client:
        assert usage(client)["totals"] == before
