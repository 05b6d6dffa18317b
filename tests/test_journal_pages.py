"""``GET /_emulator/requests`` in pages: bounded however many entries ``journal_limit`` keeps
(up to 10^6), with a cursor that never skips or repeats an entry.

The store contract (tests/journal_contract.py) walks 2,500 entries by pages on every backend;
here the route, its refusals, the fixture handle's walk and the dashboard's bounded read.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from emulator.testing.handle import ImageEmulator

from .conftest import Client, MakeClient
from .listings import counting

NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}
GPT = {"model": "gpt-image-2", "prompt": "a dog", "size": "1024x1024"}
MISSING = "/v1/images/tasks/task_missing"


def listed(client: Client, **params: Any) -> Any:
    response = client.get("/_emulator/requests", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def seqs(body: dict[str, Any]) -> list[int]:
    return [entry["seq"] for entry in body["requests"]]


def walk(client: Client, after: str | None, **params: Any) -> list[int]:
    """The numbers of the entries on every page from the one after ``after`` on."""
    found: list[int] = []
    while True:
        body = listed(client, **params, **({"after": after} if after else {}))
        found += seqs(body)
        after = body["next"]
        if after is None:
            return found


def test_a_journal_page_holds_limit_entries_and_next_leads_to_the_rest(client: Client) -> None:
    for _ in range(5):
        client.get(MISSING)
    first = listed(client, limit=2)
    assert seqs(first) == [1, 2] and isinstance(first["next"], str)
    second = listed(client, limit=2, after=first["next"])
    assert seqs(second) == [3, 4] and isinstance(second["next"], str)
    last = listed(client, limit=2, after=second["next"])
    assert seqs(last) == [5] and last["next"] is None
    whole = listed(client)  # the default page: 1,000, the default journal_limit
    assert seqs(whole) == [1, 2, 3, 4, 5] and whole["next"] is None
    client.get(MISSING)  # a cursor of the last page finds what arrived after it
    assert seqs(listed(client, after=second["next"])) == [5, 6]


def test_the_default_page_ends_with_the_newest_entry_of_a_default_journal(
    client: Client,
) -> None:
    # docs/control-plane.md: requests[-1] is the newest while the journal holds at most 1,000
    # (the default journal_limit): one page holds the whole journal.
    for _ in range(1_003):
        client.get(MISSING)
    body = listed(client)
    assert len(body["requests"]) == 1_000 and body["next"] is None
    assert body["requests"][-1]["seq"] == 1_003


def test_a_journal_filter_that_matches_nothing_reads_one_bounded_page(
    make_client: MakeClient,
) -> None:
    client = make_client(journal_limit=10_000)
    for _ in range(1_200):
        client.get(MISSING)
    client.submit_ok(GPT)  # the one match, the last of 1,201
    store = client.app.state.emulator.store  # type: ignore[attr-defined]
    read = counting(store, "journal_page", "journal_tail")
    body = listed(client, endpoint="submit", limit=100)
    assert body["requests"] == [] and isinstance(body["next"], str)
    assert sum(read) <= 100  # the page's entries, not 1,201
    read.clear()
    body = listed(client, endpoint="submit", status=200)
    assert body["requests"] == [] and isinstance(body["next"], str) and sum(read) <= 1_000
    found = listed(client, endpoint="submit", after=body["next"])
    assert [e["endpoint"] for e in found["requests"]] == ["submit"] and found["next"] is None


def test_a_journal_walk_goes_on_while_the_bound_drops_the_entries_it_passed(
    make_client: MakeClient,
) -> None:
    client = make_client(journal_limit=30)
    for _ in range(30):
        client.get(MISSING)
    first = listed(client, limit=10)
    assert seqs(first) == list(range(1, 11))
    for _ in range(25):  # 31-55 arrive; 1-25 leave (11-25 never listed: gone before read)
        client.get(MISSING)
    assert walk(client, first["next"], limit=10) == list(range(26, 56))


def test_a_journal_cursor_from_before_a_reset_is_refused_with_404_naming_after(
    client: Client,
) -> None:
    for _ in range(3):
        client.get(MISSING)
    cursor = listed(client, limit=1)["next"]
    assert client.post("/_emulator/reset").status_code == 200
    for _ in range(3):  # numbered 1, 2, 3 again: "after 1" would skip the new entry 1
        client.get(MISSING)
    response = client.get("/_emulator/requests", params={"after": cursor})
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["code"] == "cursor_expired" and body["data"] is None
    assert "after" in body["message"] and "a reset also starts again" in body["message"]
    assert client.head("/_emulator/requests", params={"after": cursor}).status_code == 404
    assert walk(client, None) == [1, 2, 3]


def test_a_journal_cursor_of_a_restarted_emulator_is_refused(make_client: MakeClient) -> None:
    before = make_client()
    for _ in range(3):
        before.get(MISSING)
    cursor = listed(before, limit=1)["next"]
    restarted = make_client()  # another memory store: its numbering starts again
    restarted.get(MISSING)
    response = restarted.get("/_emulator/requests", params={"after": cursor})
    assert response.status_code == 404 and response.json()["code"] == "cursor_expired"
    assert "list again from the start" in response.json()["message"]


def test_a_journal_cursor_survives_a_clear(client: Client) -> None:
    for _ in range(3):
        client.get(MISSING)
    cursor = listed(client, limit=2)["next"]
    assert client.delete("/_emulator/requests").status_code == 204  # numbering goes on
    client.get(MISSING)
    assert walk(client, cursor) == [4]


@pytest.mark.parametrize(
    ("params", "named", "rule"),
    [
        ({"limit": "0"}, "limit", "from 1 to 1000"),
        ({"limit": "1001"}, "limit", "from 1 to 1000"),
        ({"limit": "-1"}, "limit", "from 1 to 1000"),
        ({"limit": "1.5"}, "limit", "from 1 to 1000"),
        ({"limit": ""}, "limit", "from 1 to 1000"),
        ({"limit": "99999999999999999999"}, "limit", "from 1 to 1000"),
        ({"after": "seq_1"}, "after", "'next' of an earlier page"),
        ({"after": ""}, "after", "'next' of an earlier page"),
        ({"after": "1." + "a" * 17}, "after", "'next' of an earlier page"),
        ({"after": "1234567890123456." + "a" * 16}, "after", "'next' of an earlier page"),
        ([("limit", "2"), ("limit", "3")], "limit", "only once"),
        ([("after", "1." + "a" * 16), ("after", "2." + "a" * 16)], "after", "only once"),
    ],
)
def test_a_bad_journal_limit_or_after_is_a_400_naming_it(
    client: Client, params: Any, named: str, rule: str
) -> None:
    client.get(MISSING)
    response = client.get("/_emulator/requests", params=params)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert named in message and rule in message


def test_an_unknown_journal_parameter_names_the_page_parameters_too(client: Client) -> None:
    response = client.get("/_emulator/requests", params={"page": "2"})
    assert response.status_code == 400
    message = response.json()["message"]
    assert "'page'" in message and "limit" in message and "after" in message


def test_a_well_formed_journal_cursor_of_another_numbering_is_404(client: Client) -> None:
    client.get(MISSING)
    response = client.get("/_emulator/requests", params={"after": f"7.{'0' * 16}"})
    assert response.status_code == 404 and response.json()["code"] == "cursor_expired"


def test_the_contract_declares_the_journal_page_and_its_refusals() -> None:
    from emulator.contract import load_contract

    contract = load_contract("emulator")
    get = contract["paths"]["/_emulator/requests"]["get"]
    refs = contract["components"]["parameters"]
    names = {
        p["name"] if "name" in p else refs[p["$ref"].rsplit("/", 1)[-1]]["name"]
        for p in get.get("parameters", [])
    }
    assert {"limit", "after"} <= names
    assert {"400", "404"} <= set(get["responses"])
    schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = contract["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert "next" in schema["required"] and "requests" in schema["required"]
    # The HEAD answers as the GET would: it declares the same parameters (the review found
    # them missing); the DELETE takes none.
    item = contract["paths"]["/_emulator/requests"]
    assert item["head"].get("parameters") == get["parameters"]
    assert "parameters" not in item and "parameters" not in item["delete"]


def test_the_handle_returns_all_of_a_2500_entry_journal_a_page_at_a_time() -> None:
    from emulator import Settings, create_app
    from emulator.testing.app_loop import AppLoop

    app = create_app(Settings(seed=1, clock="manual", journal_limit=10_000))
    loop = AppLoop()
    handle = ImageEmulator(app, loop, "http://image-emulator.test", in_process=True)
    try:
        with handle.client() as client:
            for i in range(2_500):
                client.get(f"/v1/images/tasks/task_{i}")
        read = counting(handle.emulator.store, "journal_page", "journal_tail")
        entries = handle.requests()
        assert [e["seq"] for e in entries] == list(range(1, 2_501))
        assert [e["path"] for e in entries][-1] == "/v1/images/tasks/task_2499"
        assert max(read) <= 1_000 and len(read) == 3  # a page at a time
        assert len(handle.requests(endpoint="poll", status=404)) == 2_500
        handle.assert_requested(2_500, endpoint="poll")
    finally:
        handle.close()
        loop.close(last=app.state.emulator.store.close())


def test_the_handle_says_so_when_a_reset_restarts_the_journal_while_it_walks(
    handle: ImageEmulator,
) -> None:
    from emulator.usecases.pages import CursorGone

    handle.configure(journal_limit=2_000)
    with handle.client() as client:
        for i in range(1_001):
            client.get(f"/v1/images/tasks/task_{i}")
    store = handle.emulator.store
    first = store.journal_page
    calls: list[object] = []

    async def reset_after_the_first_page(*args: Any, **kwargs: Any) -> Any:
        found = await first(*args, **kwargs)
        if not calls:
            calls.append(args)
            await store.reset()  # the numbering starts again: the walk's cursor is refused
            await store.append_journal({"path": "/new"}, 2_000)
        return found

    store.journal_page = reset_after_the_first_page  # type: ignore[method-assign]
    with pytest.raises(CursorGone, match=r"journal's numbering started again .*1000 entries read"):
        handle.requests()


def test_a_tasks_dashboard_page_reads_the_newest_page_of_the_journal(
    make_client: MakeClient,
) -> None:
    client = make_client(journal_limit=10_000)
    task_id = client.submit_ok(NANO)  # entry 1: older than the newest 1,000
    for _ in range(1_500):
        client.get(MISSING)
    store = client.app.state.emulator.store  # type: ignore[attr-defined]
    read = counting(store, "journal_page", "journal_tail")
    page = client.get(f"/_emulator/ui/tasks/{quote(task_id)}")
    assert page.status_code == 200
    assert sum(read) <= 1_000  # not the 1,501 the journal keeps
    assert "None among the newest 1,000 entries of the journal" in page.text
    client.get(f"/v1/images/tasks/{task_id}")
    page = client.get(f"/_emulator/ui/tasks/{quote(task_id)}")
    assert f"GET /v1/images/tasks/{task_id}" in page.text
    assert "found among the newest 1,000 entries of the journal" in page.text
