"""The dashboard in a real browser: Debian's chromium driven by Playwright.

One browser per test process (session scope), a fresh context (cookies) per test; the
emulator is served by uvicorn on a free loopback port with the manual clock, so nothing here
waits for time to pass: Playwright's ``expect`` waits for the page to show a state, and the
clock moves only when a test (or the page) moves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .conftest import LiveServer
from .ui_browser import launch

KEY = "sk-browser-test"
UI = "/_emulator/ui"
#: Long enough for a page's once-a-second refresh on a busy two-core machine.
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module, not session: Playwright's sync API keeps an event loop running in this thread
    # while it is started, and the tests run after this module in the same process (xdist's
    # worker) would find it there (asyncio.run refuses to start).
    with sync_playwright() as playwright:
        browser = launch(playwright)  # a missing chromium is an error, never a skip
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


Serve = Callable[..., tuple[LiveServer, httpx.Client]]


@pytest.fixture
def serve(live: Callable[..., LiveServer]) -> Iterator[Serve]:
    """An emulator on a loopback port and an API client of it."""
    clients: list[httpx.Client] = []

    def start(**settings: Any) -> tuple[LiveServer, httpx.Client]:
        server = live(**settings)
        api = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        )
        clients.append(api)
        return server, api

    yield start
    for client in clients:
        client.close()


def submit(api: httpx.Client, body: dict[str, Any]) -> str:
    response = api.post("/v1/images/tasks", json=body)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]["task_id"]
    return task_id


def test_a_submitted_task_appears_and_its_bar_moves_when_the_page_advances_the_clock(
    serve: Serve, page: Page
) -> None:
    server, api = serve()
    page.goto(server.base_url + UI)
    task_id = submit(api, {"model": "gpt-image-2", "prompt": "a cube", "size": "1024x1024"})
    row = page.locator(f'tr[data-task="{task_id}"]')
    expect(row).to_be_visible()  # by the live refresh: the page was loaded before the task
    bar = row.get_by_role("progressbar")
    expect(bar).to_have_attribute("value", "0")
    expect(row.locator(".status")).to_have_text("queued")
    schedule = api.get(f"/_emulator/tasks/{task_id}").json()["task"]["schedule"]
    halfway = schedule["queued_s"] + schedule["processing_s"] / 2
    page.get_by_label("Advance by (seconds)").fill(f"{halfway:.3f}")
    page.get_by_role("button", name="Advance", exact=True).click()
    row = page.locator(f'tr[data-task="{task_id}"]')
    expect(row.locator(".status")).to_have_text("processing")
    value = int(row.get_by_role("progressbar").get_attribute("value") or "0")
    assert 40 <= value <= 60, value
    page.get_by_role("button", name="+1 min").click()
    expect(page.locator(f'tr[data-task="{task_id}"] .status')).to_have_text("succeeded")
    expect(page.locator(f'tr[data-task="{task_id}"]').get_by_role("progressbar")).to_have_attribute(
        "value", "100"
    )
    assert api.get(f"/v1/images/tasks/{task_id}").json()["data"]["status"] == "succeeded"


def test_fail_on_the_page_makes_the_next_poll_answer_failed_with_that_code(
    serve: Serve, page: Page
) -> None:
    server, api = serve()
    task_id = submit(api, {"model": "NanoBanana", "prompt": "a cube"})
    page.goto(f"{server.base_url}{UI}/tasks/{task_id}")
    page.get_by_label("Error code").fill("content_policy_violation")
    page.get_by_label("Message (optional)").fill("the prompt names a forbidden thing")
    page.get_by_role("button", name="Fail").click()
    expect(page.locator("#task-status")).to_have_text("failed")
    task = api.get(f"/v1/images/tasks/{task_id}").json()["data"]
    assert task["status"] == "failed"
    assert task["error"]["code"] == "content_policy_violation"
    assert task["error"]["message"] == "the prompt names a forbidden thing"
    expect(page.get_by_role("button", name="Fail")).to_have_count(0)  # terminal is final


def test_a_429_rule_added_from_the_form_refuses_the_next_submission_and_shows_its_hit(
    serve: Serve, page: Page
) -> None:
    server, api = serve()
    page.goto(f"{server.base_url}{UI}/faults")
    page.get_by_label("Kind").select_option("http_error")
    page.get_by_label("HTTP status").select_option("429")
    page.get_by_label("Retry-After (s)").fill("3")
    page.get_by_label("Endpoint").select_option("submit")
    page.get_by_label("Times (blank: unlimited)").fill("1")
    page.get_by_role("button", name="Add rule").click()
    hits = page.locator('[data-hits-for="rule-1"]')
    expect(hits).to_have_text("0")
    refused = api.post("/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
    expect(hits).to_have_text("1")  # by the live refresh, without a reload
    assert api.post("/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"}).is_success


def test_result_thumbnails_load_and_open_full_size(serve: Serve, page: Page) -> None:
    server, api = serve()
    task_id = submit(api, {"model": "NanoBanana2-0.5K", "prompt": "a lighthouse", "n": 2})
    api.post("/_emulator/clock/advance", json={"seconds": 3600})
    page.goto(f"{server.base_url}{UI}/tasks/{task_id}")
    thumbs = page.locator("img.thumb")
    expect(thumbs).to_have_count(2)
    for i in range(2):
        thumb = thumbs.nth(i)
        thumb.scroll_into_view_if_needed()
        expect(thumb).to_have_js_property("complete", True)
        assert thumb.evaluate("img => img.naturalWidth") == 512
    link = page.locator("ul.thumbs a").first
    href = link.get_attribute("href") or ""
    assert api.get(href).headers["content-type"] == "image/png"


def test_with_an_admin_token_the_page_refuses_without_it_and_asks_for_it_once(
    serve: Serve, page: Page
) -> None:
    server, api = serve(admin_token="s3cret-token")
    task_id = submit(api, {"model": "NanoBanana", "prompt": "a private cube"})
    answer = page.goto(f"{server.base_url}{UI}/tasks/{task_id}")
    assert answer is not None and answer.status == 401
    expect(page.get_by_text("a private cube")).to_have_count(0)
    page.get_by_label("Admin token").fill("not-it")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    page.get_by_label("Admin token").fill("s3cret-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#prompt")).to_have_text("a private cube")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["emulator_ui_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert "s3cret-token" not in session["value"]
    page.goto(server.base_url + UI)  # kept for the session: no second prompt
    expect(page.locator(f'tr[data-task="{task_id}"]')).to_be_visible()


def test_looking_at_results_is_not_journaled_and_takes_no_fault_hit(
    serve: Serve, page: Page
) -> None:
    server, api = serve()
    task_id = submit(api, {"model": "NanoBanana2-0.5K", "prompt": "a lighthouse"})
    api.post("/_emulator/clock/advance", json={"seconds": 3600})
    result_url = api.get(f"/v1/images/tasks/{task_id}").json()["data"]["result_url"]
    api.post("/_emulator/faults", json={"effect": "drop", "match": {"endpoint": "result"}})
    page.goto(f"{server.base_url}{UI}/tasks/{task_id}")
    thumb = page.locator("img.thumb")
    expect(thumb).to_have_js_property("complete", True)
    assert thumb.evaluate("img => img.naturalWidth") == 512
    # What the app sees is unchanged by looking: its download still meets the rule, first.
    assert api.get("/_emulator/faults").json()["faults"][0]["hits"] == 0
    assert api.get("/_emulator/requests", params={"endpoint": "result"}).json()["requests"] == []
    with pytest.raises(httpx.RemoteProtocolError):
        api.get(result_url)
    assert api.get("/_emulator/faults").json()["faults"][0]["hits"] == 1


def test_the_fault_form_shows_only_the_fields_the_chosen_kind_uses(
    serve: Serve, page: Page
) -> None:
    server, api = serve()
    page.goto(f"{server.base_url}{UI}/faults")
    headers = page.get_by_label("Answer headers")
    code = page.get_by_label("Error code")
    page.get_by_label("Kind").select_option("respond")
    expect(headers).to_be_visible()
    headers.fill("X-Left: behind")
    expect(code).to_be_hidden()
    page.get_by_label("Kind").select_option("drop")
    # Hidden whatever display the field's class gives it (.field is a flex box), and
    # disabled, so the text left in it is not sent.
    expect(headers).to_be_hidden()
    expect(headers).to_be_disabled()
    assert headers.evaluate("node => getComputedStyle(node.closest('.field')).display") == "none"
    page.get_by_role("button", name="Add rule").click()
    expect(page.locator('tr[data-rule="rule-1"]')).to_be_visible()
    rule = api.get("/_emulator/faults").json()["faults"][0]
    assert rule["effect"] == {"kind": "drop"} | {k: None for k in rule["effect"] if k != "kind"}
