"""The dashboard over HTTP (no browser): pages, escaping, the live table, and each form acting
through the control plane's operations (the guards: tests/test_ui_guards.py)."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import Client, MakeClient

UI = "/_emulator/ui"
ORIGIN = {"Origin": "http://testserver"}
NANO = {"model": "NanoBanana", "prompt": "a cube"}


def csrf(client: Client) -> str:
    """The dashboard's CSRF token: a page sets the cookie its forms must repeat."""
    if not client.cookies.get("emulator_ui_csrf"):
        assert client.get(f"{UI}/settings").status_code in (200, 401)
    token: str = client.cookies["emulator_ui_csrf"]
    return token


def send(client: Client, path: str, data: dict[str, Any], **headers: str) -> Any:
    """A dashboard form as the browser sends it (same origin, the CSRF field, no redirects)."""
    fields = {"csrf": csrf(client), "next": UI} | data
    return client.post(UI + path, data=fields, headers=ORIGIN | headers, follow_redirects=False)


def problem(response: Any) -> str:
    """The refusal's message on a page."""
    found = re.search(r'class="problem" role="alert"[^>]*>(.*?)</p>', response.text, re.S)
    assert found, response.text[:2000]
    return found.group(1)


# -- pages --------------------------------------------------------------------------------
def test_every_page_renders_and_names_the_task(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    for path in ("", f"/tasks/{task_id}", "/faults", "/billing", "/settings"):
        response = client.get(UI + path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
    assert task_id in client.get(UI).text
    assert client.head(UI).status_code == 200


def test_a_prompt_is_escaped_on_every_page_that_shows_it(client: Client) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    task_id = client.submit_ok({"model": "NanoBanana", "prompt": evil})
    page = client.get(f"{UI}/tasks/{task_id}").text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_pages_allow_only_the_dashboards_own_script(client: Client) -> None:
    policy = client.get(UI).headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy


def test_an_unknown_task_is_a_404_page(client: Client) -> None:
    response = client.get(f"{UI}/tasks/task_{'0' * 32}")
    assert response.status_code == 404
    assert "does not exist" in problem(response)


def test_static_assets_are_served_from_the_package(client: Client) -> None:
    script = client.get(f"{UI}/static/dashboard.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get(f"{UI}/static/dashboard.css").status_code == 200
    assert client.get(f"{UI}/static/../app.py").status_code == 404


# -- the live table -----------------------------------------------------------------------
def test_the_live_table_follows_the_clock_and_filters(client: Client) -> None:
    first = client.submit_ok(NANO)
    client.submit_ok({"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    rows = client.get(f"{UI}/live/tasks").json()["rows"]
    assert [r["status"] for r in rows] == ["queued", "queued"]
    client.advance(10_000)
    live = client.get(f"{UI}/live/tasks", params={"model": "NanoBanana"}).json()
    assert [(r["id"], r["status"], r["progress"]) for r in live["rows"]] == [
        (first, "succeeded", 100)
    ]
    assert live["clock"]["now"] == 10_000 and live["complete"]
    failed = client.get(f"{UI}/live/tasks", params={"status": "failed"}).json()
    assert failed["rows"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("model=NoSuchModel", "model"),
        ("colour=red", "colour"),
        ("status=queued&status=failed", "status"),
    ],
)
def test_a_table_filter_that_could_never_match_is_refused_naming_it(
    client: Client, query: str, field: str
) -> None:
    answer = client.get(f"{UI}/live/tasks?{query}")
    assert answer.status_code == 400 and field in answer.json()["message"]
    page = client.get(f"{UI}?{query}")
    assert page.status_code == 400 and field in problem(page)


def test_the_live_table_looks_at_a_bounded_number_of_tasks_and_says_so(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulator.http.ui import rows

    monkeypatch.setattr(rows, "SCAN_LIMIT", 3)
    client = make_client()
    for _ in range(5):
        client.submit_ok(NANO)
    live = client.get(f"{UI}/live/tasks", params={"status": "failed"}).json()
    assert (live["stored"], live["scanned"], live["complete"]) == (5, 3, False)
    assert "looked at the newest 3 only" in client.get(f"{UI}?status=failed").text


# -- steering -----------------------------------------------------------------------------
def test_failing_a_task_from_its_page_is_what_the_next_poll_answers(client: Client) -> None:
    task_id = client.submit_ok(NANO)
    done = send(
        client,
        f"/tasks/{task_id}/outcome",
        {"outcome": "failed", "code": "content_policy_violation", "message": "no"},
    )
    assert done.status_code == 303
    task = client.task(task_id)
    assert task["status"] == "failed"
    assert task["error"] == {"code": "content_policy_violation", "message": "no"}
    again = send(client, f"/tasks/{task_id}/outcome", {"outcome": "succeeded"})
    assert again.status_code == 409 and "final" in problem(again)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"outcome": "failed", "code": "c" * 129}, "code"),
        ({"outcome": "failed", "message": "m" * 4097}, "message"),
    ],
)
def test_a_bad_outcome_is_refused_naming_the_field(
    client: Client, fields: dict[str, str], field: str
) -> None:
    task_id = client.submit_ok(NANO)
    response = send(client, f"/tasks/{task_id}/outcome", fields)
    assert response.status_code == 400 and field in problem(response)
    assert client.task(task_id)["status"] == "queued"


def test_a_fault_added_from_the_form_applies_and_its_hits_are_shown(client: Client) -> None:
    added = send(
        client,
        "/faults/add",
        {
            "kind": "http_error",
            "status": "429",
            "retry_after": "7",
            "endpoint": "submit",
            "times": "1",
            "api_key": "sk-test-key",
            "headers": "X-Env: test",
        },
    )
    assert added.status_code == 303
    refused = client.submit(NANO, headers={"X-Env": "test"})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "7"
    assert client.get(f"{UI}/live/faults").json()["faults"] == [{"id": "rule-1", "hits": 1}]
    page = client.get(f"{UI}/faults").text
    assert 'data-hits-for="rule-1">1<' in page
    assert "sk-test-key" not in page  # the key a rule matches on is masked
    assert send(client, "/faults/remove", {"id": "rule-1"}).status_code == 303
    assert client.get("/_emulator/faults").json()["faults"] == []
    assert send(client, "/faults/remove", {"id": "rule-1"}).status_code == 404
    too_long = send(client, "/faults/remove", {"id": "r" * 129})
    assert too_long.status_code == 400 and "id" in problem(too_long)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"kind": "explode"}, "kind must be one of"),
        ({"kind": "http_error", "status": "418"}, "status must be one of"),
        ({"kind": "http_error", "status": "4.5"}, "status"),
        ({"kind": "fail_task", "at_progress": "100"}, "effect.at_progress"),
        ({"kind": "latency", "seconds": "nan"}, "seconds"),
        ({"kind": "drop", "probability": "2"}, "probability"),
        ({"kind": "drop", "times": "0"}, "times"),
        ({"kind": "drop", "headers": "no colon here"}, "headers"),
        ({"kind": "drop", "headers": "Bad Name: x"}, "headers"),
        ({"kind": "drop", "id": "a/b"}, "id"),
        ({"kind": "drop", "endpoint": "everywhere"}, "endpoint"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field_and_the_form_keeps_what_was_typed(
    client: Client, fields: dict[str, str], named: str
) -> None:
    response = send(client, "/faults/add", fields | {"prompt_contains": "kept text"})
    assert response.status_code == 400
    assert named in problem(response)
    assert 'value="kept text"' in response.text
    assert client.get("/_emulator/faults").json()["faults"] == []


def test_the_form_keeps_to_the_control_planes_cap_on_rules(client: Client) -> None:
    rules = [{"effect": "drop", "match": {"prompt_contains": f"m{i}"}} for i in range(1000)]
    assert client.post("/_emulator/faults", json=rules).status_code == 201
    response = send(client, "/faults/add", {"kind": "drop"})
    assert response.status_code == 400 and "at most 1000" in problem(response)
    assert len(client.get("/_emulator/faults").json()["faults"]) == 1000


def test_reset_from_the_dashboard_forgets_tasks_and_the_clock(client: Client) -> None:
    client.submit_ok(NANO)
    client.advance(30)
    assert send(client, "/reset", {}).status_code == 303
    assert client.get("/_emulator/tasks").json()["tasks"] == []
    assert client.get("/_emulator/clock").json()["now"] == 0


# -- billing and settings -----------------------------------------------------------------
def test_balances_are_set_by_key_and_changed_from_their_row(client: Client) -> None:
    assert send(client, "/balances/set", {"key": "sk-test-key", "balance": "40"}).status_code == 303
    client.submit_ok({"model": "NanoBanana2-0.5K", "prompt": "x", "n": 2})  # holds 40
    assert client.submit({"model": "NanoBanana2-0.5K", "prompt": "x"}).status_code == 403
    page = client.get(f"{UI}/billing").text
    assert "sk-test-key" not in page and "sk-t…key" in page
    owner = re.search(r'name="owner" value="([0-9a-f]+)"', page)
    assert owner
    changed = send(client, "/balances/change", {"owner": owner.group(1), "balance": "100"})
    assert changed.status_code == 303
    assert client.get("/_emulator/balances").json()["balances"] == [
        {"key": "sk-t…key", "balance": 100}
    ]
    unlimited = send(client, "/balances/change", {"owner": owner.group(1), "balance": ""})
    assert unlimited.status_code == 303
    assert client.get("/_emulator/balances").json()["balances"] == []


@pytest.mark.parametrize(
    ("path", "fields", "status", "named"),
    [
        ("/balances/set", {"key": "", "balance": "5"}, 400, "key"),
        ("/balances/set", {"key": "k" * 4097, "balance": "5"}, 400, "key"),
        ("/balances/set", {"key": "sk-a", "balance": "-1"}, 400, "balance"),
        ("/balances/set", {"key": "sk-a", "balance": "1e3"}, 400, "balance"),
        ("/balances/set", {"key": "sk-a", "balance": "9" * 16}, 400, "balance"),
        ("/balances/change", {"owner": "nobody", "balance": "5"}, 404, "owner"),
    ],
)
def test_a_bad_balance_is_refused_naming_the_field(
    client: Client, path: str, fields: dict[str, str], status: int, named: str
) -> None:
    response = send(client, path, fields)
    assert response.status_code == status and named in problem(response)
    assert client.get("/_emulator/balances").json()["balances"] == []


def test_settings_show_what_changes_at_run_time_with_secrets_masked(
    make_client: MakeClient,
) -> None:
    client = make_client(
        admin_token="s3cret-token",
        api_keys=("sk-test-key",),
        faults=({"effect": "drop", "match": {"api_key": "sk-secret-match"}},),
    )
    page = client.get(f"{UI}/settings", headers={"X-Emulator-Token": "s3cret-token"}).text
    for secret in ("s3cret-token", "sk-test-key", "sk-secret-match"):
        assert secret not in page
    assert re.search(r"<code>time_scale</code></th><td>.*?</td><td>at run time</td>", page)
    assert re.search(r"<code>seed</code></th><td>.*?</td><td>restart</td>", page)


def test_the_settings_page_says_of_each_setting_what_patch_does(client: Client) -> None:
    """The page says "at run time" where PATCH /_emulator/config takes the setting, "restart"
    where it refuses it (log_level was listed as changeable, and PATCH took it to no effect)."""
    page = client.get(f"{UI}/settings").text
    rows = re.findall(r"<code>(\w+)</code></th><td>.*?</td><td>(at run time|restart)</td>", page)
    values = client.get("/_emulator/config").json()
    assert {name for name, _ in rows} == set(values)
    for name, when in rows:
        r = client.patch("/_emulator/config", json={name: values[name]})
        assert (r.status_code == 200) == (when == "at run time"), (name, when, r.text)
        if when == "restart":
            assert f"{name!r} cannot change while serving" in r.json()["message"]
    assert ("log_level", "restart") in rows


def test_the_journal_and_charge_of_a_task_are_on_its_page(client: Client) -> None:
    task_id = client.submit_ok({"model": "NanoBanana2-0.5K", "prompt": "x", "n": 2})
    client.advance(10_000)
    client.task(task_id)
    page = client.get(f"{UI}/tasks/{quote(task_id)}").text
    assert f"GET /v1/images/tasks/{task_id}" in page and "POST /v1/images/tasks" in page
    assert "40 credits for 2 images" in page
    assert page.count('class="thumb"') == 2


def test_the_dashboards_pictures_need_the_token_and_exist_only_once_succeeded(
    make_client: MakeClient,
) -> None:
    client = make_client(admin_token="s3cret")
    token = {"X-Emulator-Token": "s3cret"}
    task_id = client.submit_ok({"model": "NanoBanana2-0.5K", "prompt": "x"})
    picture = f"{UI}/tasks/{task_id}/pictures/0"
    assert client.get(picture, headers=token).status_code == 404  # still queued
    client.post("/_emulator/clock/advance", json={"seconds": 3600}, headers=token)
    assert client.get(picture).status_code == 401
    shown = client.get(picture, headers=token)
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    assert shown.content == client.get(client.task(task_id)["result_url"]).content
    assert client.get(f"{UI}/tasks/{task_id}/pictures/1", headers=token).status_code == 404


def test_a_respond_rule_from_the_form_answers_with_its_status_body_and_headers(
    client: Client,
) -> None:
    added = send(
        client,
        "/faults/add",
        {
            "kind": "respond",
            "answer_status": "418",
            "body_kind": "json",
            "answer_body": '{"error": {"message": "teapot", "code": "teapot"}}',
            "answer_headers": "X-Stub: yes",
            "endpoint": "submit",
            "times": "1",
        },
    )
    assert added.status_code == 303
    answered = client.submit(NANO)
    assert answered.status_code == 418 and answered.headers["x-stub"] == "yes"
    assert answered.json() == {"error": {"message": "teapot", "code": "teapot"}}
    assert client.submit(NANO).status_code == 200  # times: 1, spent
    text = send(
        client,
        "/faults/add",
        {"kind": "respond", "answer_status": "503", "body_kind": "text", "answer_body": "busy"},
    )
    assert text.status_code == 303
    refused = client.submit(NANO)
    assert (refused.status_code, refused.text) == (503, "busy")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"answer_status": "418", "answer_body": "{not json"}, "answer_body"),
        ({"answer_status": "418", "answer_body": "[" * 100_000}, "answer_body"),
        # JSON null is "no body" to the control plane: typed here, it would vanish silently.
        ({"answer_status": "418", "answer_body": " null "}, "answer_body"),
        ({"answer_status": "99"}, "status"),
        ({"answer_status": "418", "answer_headers": "Content-Length: 3"}, "content-length"),
        ({"answer_status": "418", "answer_headers": "no colon"}, "answer_headers"),
    ],
)
def test_a_bad_respond_rule_from_the_form_is_refused_naming_the_field(
    client: Client, fields: dict[str, str], named: str
) -> None:
    response = send(client, "/faults/add", {"kind": "respond", **fields})
    assert response.status_code == 400
    assert named in problem(response).lower()
    assert client.get("/_emulator/faults").json()["faults"] == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        # One header each, as the control plane's rules: names are case-insensitive.
        ({"kind": "drop", "headers": "X-A: 1\nx-a: 2"}, "'x-a' and 'X-A' are the same header"),
        ({"kind": "drop", "headers": "X-A: 1\nX-A: 2"}, "headers: line 2: 'X-A' is given twice"),
        (
            {"kind": "respond", "answer_status": "200", "answer_headers": "X-B: 1\r\nx-b: 2"},
            "answer_headers: line 2: 'x-b' and 'X-B' are the same header",
        ),
        # A select takes only its options (a forged or stale form), named with them.
        (
            {"kind": "respond", "answer_status": "200", "body_kind": "xml", "answer_body": "x"},
            "body_kind must be one of json, text, got 'xml'",
        ),
        ({"kind": "drop", "task_type": "video"}, "task_type must be one of"),
        ({"kind": "latency", "seconds": "1", "status": "418"}, "status must be one of"),
        ({"kind": "drop", "endpoint": ""}, "endpoint must be one of submit"),
        ({"kind": ""}, "kind must be one of fail_task"),
        ({"code": "x"}, "kind is required"),
    ],
)
def test_a_form_that_repeats_a_header_or_leaves_a_selects_options_is_refused(
    client: Client, fields: dict[str, str], named: str
) -> None:
    response = send(client, "/faults/add", fields)
    assert response.status_code == 400
    assert named in html.unescape(problem(response))
    assert client.get("/_emulator/faults").json()["faults"] == []


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("bogus=1", ["'bogus'", "status", "model"]),
        ("status=queued&status=failed", ["'status'", "once"]),
        ("status=done", ["status", "queued", "processing", "succeeded", "failed", "'done'"]),
        ("model=Nope", ["model", "'Nope'"]),
    ],
)
@pytest.mark.parametrize("where", ["", "/live/tasks"])
def test_a_task_filter_that_could_never_match_is_refused_naming_it(
    client: Client, where: str, query: str, names: list[str]
) -> None:
    client.submit_ok(NANO)
    response = client.get(f"{UI}{where}?{query}")
    assert response.status_code == 400, response.text
    for name in names:
        assert name in html.unescape(response.text)


@pytest.mark.parametrize("where", ["", "/live/tasks"])
def test_an_empty_task_filter_is_no_filter(client: Client, where: str) -> None:
    client.submit_ok(NANO)
    assert client.get(f"{UI}{where}?status=&model=").status_code == 200


@pytest.mark.parametrize("index", ["00", "01", "+1", "0x1", "1_0", "9" * 5000])
def test_a_dashboard_picture_has_one_address_and_any_other_index_is_a_404(
    client: Client, index: str
) -> None:
    task_id = client.submit_ok({"model": "NanoBanana2-0.5K", "prompt": "x", "n": 2})
    client.advance(3600)
    for canonical in ("0", "1"):
        assert client.get(f"{UI}/tasks/{task_id}/pictures/{canonical}").status_code == 200
    # Not a second name for a picture, and never a 500 (5000 digits are no Python int).
    response = client.get(f"{UI}/tasks/{task_id}/pictures/{index}")
    assert response.status_code == 404, response.text[:200]
    assert len(response.content) <= 1024


@pytest.mark.parametrize(
    ("path", "query", "names"),
    [
        ("/billing", "order=olde", ["order", "newest", "oldest", "'olde'"]),
        ("/billing", "ordre=oldest", ["'ordre'", "order", "after"]),
        ("/billing", "order=oldest&order=newest", ["'order'", "once"]),
        ("/settings", "tab=keys", ["'tab'", "no query parameters"]),
        ("/faults", "id=f1", ["'id'", "no query parameters"]),
        ("/tasks/{task_id}", "journal=all", ["'journal'", "no query parameters"]),
    ],
)
def test_a_page_refuses_a_query_parameter_it_does_not_take_naming_it(
    client: Client, path: str, query: str, names: list[str]
) -> None:
    task_id = client.submit_ok(NANO)
    response = client.get(f"{UI}{path.format(task_id=task_id)}?{query}")
    assert response.status_code == 400, response.text[:500]
    for name in names:
        assert name in html.unescape(problem(response))


@pytest.mark.parametrize("path", ["/live/clock", "/live/faults", "/live/tasks/{task_id}"])
def test_a_live_answer_refuses_a_query_parameter_it_does_not_take(
    client: Client, path: str
) -> None:
    task_id = client.submit_ok(NANO)
    response = client.get(f"{UI}{path.format(task_id=task_id)}?since=1")
    assert response.status_code == 400
    assert "'since'" in response.json()["message"]


@pytest.mark.parametrize("query", ["", "order=newest", "order=", "order=oldest"])
def test_the_billing_pages_own_orders_are_taken(client: Client, query: str) -> None:
    client.submit_ok(NANO)
    response = client.get(f"{UI}/billing?{query}")
    assert response.status_code == 200
    walking = "in hold order" in response.text
    assert walking == (query == "order=oldest")


def test_every_page_names_a_favicon_it_serves(client: Client) -> None:
    # Else the browser asks for /favicon.ico and logs a 404 on every page.
    for path in ("", "/faults", "/login"):
        icon = re.search(r'<link rel="icon" href="([^"]+)"', client.get(UI + path).text)
        assert icon, path
        answer = client.get(icon.group(1))
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
