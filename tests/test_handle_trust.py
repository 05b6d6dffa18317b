"""The handle's helpers never pass when they cannot tell (review round 11): a fault handle's
hits after its rule went, journal assertions the journal could not cover, typed body
filters, and what a failed assert_requested says."""

from __future__ import annotations

import pytest

from emulator.testing.handle import ImageEmulator
from emulator.usecases.journal import JournalIncomplete
from emulator.usecases.steer import FaultGone

NANO = {"model": "NanoBanana", "prompt": "a cat", "n": 2}
SUBMIT = "/v1/images/tasks"


def test_a_removed_rules_handle_keeps_the_hits_it_had(handle: ImageEmulator) -> None:
    retry = handle.faults.add({"kind": "http_error", "status": 503}, endpoint="submit", times=1)
    with handle.client() as client:
        assert client.post(SUBMIT, json=NANO).status_code == 503
    assert retry.hits == 1
    retry.remove()
    assert retry.hits == 1  # was 0: the rule's count went with it
    handle.faults.add("drop", endpoint="poll", id=retry.id)  # another rule under its id
    assert retry.hits == 1


def test_a_handle_whose_rule_went_another_way_refuses_to_tell(handle: ImageEmulator) -> None:
    cleared = handle.faults.add("drop", endpoint="poll")
    handle.faults.clear()
    with pytest.raises(FaultGone, match=r"'rule-1' .* no longer installed .*hits"):
        cleared.hits  # noqa: B018 - the property is what is tested
    old = handle.faults.add("drop", endpoint="poll")
    handle.reset()
    new = handle.faults.add("drop", endpoint="poll")  # rule-1 again after the reset
    assert (old.id, new.id) == ("rule-1", "rule-1")
    with pytest.raises(FaultGone, match=r"replaced by another rule with the same id"):
        old.hits  # noqa: B018 - was the new rule's count
    with pytest.raises(FaultGone, match="replaced"):
        old.remove()  # never removes the new rule
    assert new.hits == 0
    replaced = handle.faults.add("drop", endpoint="poll", id="mine")
    handle.faults.add("drop", endpoint="submit", id="mine")
    with pytest.raises(LookupError, match="'mine'"):
        replaced.hits  # noqa: B018
    assert [rule["id"] for rule in handle.faults] == ["rule-1", "mine"]
    assert "serial" not in next(iter(handle.faults))  # not part of the rule's view


def test_journal_helpers_refuse_when_journal_limit_dropped_entries(
    handle: ImageEmulator,
) -> None:
    handle.configure(journal_limit=2)
    handle.faults.add({"kind": "http_error", "status": 503}, endpoint="submit", times=1)
    with handle.client() as client:
        for _ in range(4):
            client.post(SUBMIT, json=NANO)
    with pytest.raises(JournalIncomplete, match=r"dropped 2 .*journal_limit = 2"):
        handle.assert_requested(times=0, status=503)  # the 503 was dropped: used to pass
    with pytest.raises(JournalIncomplete, match="journal_limit"):
        handle.assert_requested(3, endpoint="submit")  # 4 were sent: used to pass
    with pytest.raises(JournalIncomplete):
        handle.sent()
    assert len(handle.requests(partial=True)) == 2  # what is kept, asked for as such
    handle.control("DELETE", "/_emulator/requests")  # cleared on purpose: a new window
    handle.assert_requested(times=0, status=503)
    handle.reset()
    handle.assert_requested(times=0)


def test_journal_helpers_refuse_when_journal_limit_is_or_was_0(handle: ImageEmulator) -> None:
    handle.configure(journal_limit=0)
    with handle.client() as client:
        client.post(SUBMIT, json=NANO)
    with pytest.raises(JournalIncomplete, match="journal_limit is 0"):
        handle.assert_requested(times=0, endpoint="submit")
    with pytest.raises(JournalIncomplete):
        assert handle.sent() == []
    handle.configure(journal_limit=100)
    with pytest.raises(JournalIncomplete, match="1 requests were not journaled"):
        handle.assert_requested(times=0, endpoint="submit")


def test_a_clear_after_journal_limit_0_starts_a_whole_window(handle: ImageEmulator) -> None:
    handle.configure(journal_limit=0)
    with handle.client() as client:
        client.post(SUBMIT, json=NANO)
    handle.configure(journal_limit=100)
    handle.control("DELETE", "/_emulator/requests")  # "since its last reset or clear"
    with handle.client() as client:
        client.get(f"{SUBMIT}/task_x")
    assert [e["endpoint"] for e in handle.requests()] == ["poll"]


def test_the_control_plane_listing_says_what_journal_limit_0_kept_no_entry_of(
    handle: ImageEmulator,
) -> None:
    handle.configure(journal_limit=10)
    with handle.client() as client:
        client.get(f"{SUBMIT}/task_0")
        handle.configure(journal_limit=0)  # the first request at 0 empties the journal
        for i in range(2):
            client.get(f"{SUBMIT}/task_{i}")
        handle.configure(journal_limit=10)
        client.get(f"{SUBMIT}/task_9")
    page = handle.control("GET", "/_emulator/requests")
    # Entry 1 went with the emptying at 0 (the bound's, not a clear): dropped; the two
    # requests at 0 were never numbered: unrecorded.
    assert [e["seq"] for e in page["requests"]] == [2]
    assert (page["dropped"], page["unrecorded"]) == (1, 2)
    handle.control("DELETE", "/_emulator/requests")
    page = handle.control("GET", "/_emulator/requests")
    assert (page["requests"], page["dropped"], page["unrecorded"]) == ([], 0, 0)


def test_the_control_plane_listing_says_how_many_entries_were_dropped(
    handle: ImageEmulator,
) -> None:
    handle.configure(journal_limit=3)
    with handle.client() as client:
        for i in range(5):
            client.get(f"{SUBMIT}/task_{i}")
    page = handle.control("GET", "/_emulator/requests")
    assert [e["seq"] for e in page["requests"]] == [3, 4, 5] and page["dropped"] == 2
    first = handle.control("GET", "/_emulator/requests", params={"limit": 1})
    rest = handle.control("GET", "/_emulator/requests", params={"after": first["next"]})
    assert (first["dropped"], rest["dropped"]) == (2, 0)


def test_body_filters_compare_json_bodies_with_json_types(handle: ImageEmulator) -> None:
    with handle.client() as client:
        client.post(SUBMIT, json=NANO | {"n": "2", "watermark": "true", "seed": None})
        client.post(SUBMIT, json=NANO | {"n": 2, "watermark": True})
    assert [e["seq"] for e in handle.requests(body={"n": 2})] == [2]
    assert [e["seq"] for e in handle.requests(body={"n": "2"})] == [1]
    assert [e["seq"] for e in handle.requests(body={"n": 2.0})] == [2]  # one JSON number
    assert [e["seq"] for e in handle.requests(body={"watermark": True})] == [2]
    assert handle.requests(body={"watermark": 1}) == []
    assert [e["seq"] for e in handle.requests(body={"seed": None})] == [1]
    assert handle.requests(body={"seed": "null"}) == []
    handle.assert_requested(times=0, body={"n": 3})
    # The control plane's filters are query parameters, text: body[n]=2 matches both.
    listed = handle.control("GET", "/_emulator/requests", params={"body[n]": "2"})
    assert [e["seq"] for e in listed["requests"]] == [1, 2]


def test_body_filters_compare_a_forms_fields_as_text(handle: ImageEmulator) -> None:
    with handle.client() as client:
        client.post(SUBMIT, files={"model": (None, "NanoBanana"), "prompt": (None, "a cat"),
                                   "n": (None, "2")})  # fmt: skip
    assert len(handle.requests(body={"n": 2})) == 1
    assert len(handle.requests(body={"n": "2"})) == 1


def test_a_failed_assert_requested_lists_the_closest_entries(handle: ImageEmulator) -> None:
    with handle.client() as client:
        client.post(SUBMIT, json=NANO)
        client.post(SUBMIT, json=NANO | {"model": "Nope"})
        client.get(f"{SUBMIT}/task_x")
    with pytest.raises(AssertionError) as failed:
        handle.assert_requested(2, endpoint="submit", body={"model": "NanoBanana", "n": 2})
    message = str(failed.value)
    assert message.startswith("1 requests matched")
    assert "Closest of the 2 newest journal entries of endpoint submit" in message
    assert "#1 POST /v1/images/tasks -> 200" in message and "(matches)" in message
    assert "#2 POST" in message and "body[model]='Nope'" in message
    assert "task_x" not in message  # another endpoint's entry


@pytest.mark.parametrize(
    ("times", "error", "match"),
    [
        ("submit", TypeError, "times must be an integer"),
        (True, TypeError, "times"),
        (-1, ValueError, "times must be an integer >= 0"),
    ],
)
def test_assert_requested_checks_times(
    handle: ImageEmulator, times: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        handle.assert_requested(times)  # type: ignore[arg-type]
