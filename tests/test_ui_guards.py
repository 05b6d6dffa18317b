"""The dashboard's guards over HTTP: the admin token and its session cookie, forms from other
sites, where a form may send the browser, and forms bounded and strict at the door."""

from __future__ import annotations

import pytest

from .conftest import Client, MakeClient
from .test_ui_pages import NANO, ORIGIN, UI, csrf, problem, send


# -- the admin token ----------------------------------------------------------------------
def test_with_an_admin_token_every_page_and_answer_refuses_without_it(
    make_client: MakeClient,
) -> None:
    client = make_client(admin_token="s3cret")
    task_id = client.submit_ok(NANO)
    for path in ("", f"/tasks/{task_id}", "/faults", "/billing", "/settings"):
        page = client.get(UI + path)
        assert page.status_code == 401 and 'name="token"' in page.text, path
        # Nothing of the emulator's state: only the address asked for comes back, as `next`.
        assert "a cube" not in page.text and "data-task=" not in page.text
        assert 'name="seconds"' not in page.text
    assert client.get(f"{UI}/live/tasks").status_code == 401
    refused = send(client, "/clock/advance", {"seconds": "5"})
    assert refused.status_code == 401
    assert client.get("/_emulator/clock", headers={"X-Emulator-Token": "s3cret"}).json()["now"] == 0
    header = client.get(UI, headers={"X-Emulator-Token": "s3cret"})
    assert header.status_code == 200 and task_id in header.text


def test_the_token_is_asked_once_and_kept_in_a_strict_httponly_cookie(
    make_client: MakeClient,
) -> None:
    client = make_client(admin_token="s3cret")
    wrong = send(client, "/login", {"token": "guess", "next": f"{UI}/faults"})
    assert wrong.status_code == 401 and "not the admin token" in problem(wrong)
    right = send(client, "/login", {"token": "s3cret", "next": f"{UI}/faults"})
    assert right.status_code == 303 and right.headers["location"] == f"{UI}/faults"
    cookie = right.headers["set-cookie"]
    assert "emulator_ui_session=" in cookie and "s3cret" not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and f"Path={UI}" in cookie
    assert client.get(UI).status_code == 200
    assert client.get(f"{UI}/live/tasks").status_code == 200
    # The cookie opens the dashboard only, never the JSON control plane.
    assert client.get("/_emulator/tasks").status_code == 401
    out = send(client, "/logout", {})
    assert out.status_code == 303
    assert client.get(UI).status_code == 401


# -- cross-site forms ---------------------------------------------------------------------
def test_a_form_from_another_site_changes_nothing(client: Client) -> None:
    token = csrf(client)
    cases = [
        ({"Origin": "https://evil.example"}, {"csrf": token}),
        ({"Origin": "null"}, {"csrf": token}),
        ({"Sec-Fetch-Site": "cross-site"}, {"csrf": token}),
        (ORIGIN, {}),
        (ORIGIN, {"csrf": "x" * 43}),
    ]
    for headers, fields in cases:
        response = client.post(
            f"{UI}/clock/advance",
            data={"seconds": "5"} | fields,
            headers=headers,
            follow_redirects=False,
        )
        assert response.status_code == 403, (headers, fields)
    assert client.get("/_emulator/clock").json()["now"] == 0
    assert send(client, "/clock/advance", {"seconds": "5"}).status_code == 303
    assert client.get("/_emulator/clock").json()["now"] == 5


def test_a_form_that_shows_no_origin_changes_nothing(client: Client) -> None:
    """Neither Origin nor Sec-Fetch-Site naming this origin: 403, whatever the CSRF field
    (browsers send Origin with every POST; a form without it came from no page of ours)."""
    client.submit_ok(NANO)
    token = csrf(client)
    cases = [({}, "no Origin"), ({"Sec-Fetch-Site": "none"}, "another site")]
    for headers, why in [*cases, ({"Sec-Fetch-Site": "same-site"}, "another site")]:
        response = client.post(
            f"{UI}/reset", data={"csrf": token}, headers=headers, follow_redirects=False
        )
        assert response.status_code == 403, headers
        assert why in problem(response)
    assert len(client.get("/_emulator/tasks").json()["tasks"]) == 1
    # Sec-Fetch-Site alone, as this origin, is enough (a browser that sends no Origin).
    same = client.post(
        f"{UI}/reset",
        data={"csrf": token},
        headers={"Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert same.status_code == 303
    assert client.get("/_emulator/tasks").json()["tasks"] == []


def test_after_a_form_the_dashboard_goes_back_only_to_its_own_pages(client: Client) -> None:
    for target in ("https://evil.example/", "//evil.example", f"{UI}/../../v1", "/v1/x"):
        response = send(client, "/clock/advance", {"seconds": "1", "next": target})
        assert response.headers["location"] == UI, target
    kept = send(client, "/clock/advance", {"seconds": "1", "next": f"{UI}?status=queued"})
    assert kept.headers["location"] == f"{UI}?status=queued"


# -- forms at the door --------------------------------------------------------------------
@pytest.mark.parametrize("seconds", ["", "abc", "nan", "inf", "-inf", "1e999", "0x10", "-1"])
def test_a_bad_clock_step_is_refused_naming_seconds(client: Client, seconds: str) -> None:
    response = send(client, "/clock/advance", {"seconds": seconds})
    assert response.status_code == 400
    assert "seconds" in problem(response)
    assert client.get("/_emulator/clock").json()["now"] == 0


def test_the_clock_buttons_refuse_a_clock_that_is_not_manual(make_client: MakeClient) -> None:
    client = make_client(clock="real")
    assert "+10 s" not in client.get(UI).text
    response = send(client, "/clock/advance", {"seconds": "10"})
    assert response.status_code == 409 and "manual" in problem(response)


def test_forms_are_bounded_and_strict_at_the_door(client: Client) -> None:
    token = csrf(client)
    url = f"{UI}/clock/advance"
    as_json = client.post(url, json={"seconds": 5}, headers=ORIGIN)
    assert as_json.status_code == 415
    form = {"Content-Type": "application/x-www-form-urlencoded"} | ORIGIN
    huge = client.post(url, content=b"seconds=" + b"1" * (600 * 1024), headers=form)
    assert huge.status_code == 413
    bad_utf8 = client.post(url, content=f"csrf={token}&seconds=%FF", headers=form)
    assert bad_utf8.status_code == 400 and "UTF-8" in problem(bad_utf8)
    twice = client.post(url, content=f"csrf={token}&seconds=1&seconds=2", headers=form)
    assert twice.status_code == 400 and "seconds" in problem(twice)
    many = "&".join(f"f{i}=1" for i in range(100))
    crowded = client.post(url, content=f"csrf={token}&{many}", headers=form)
    assert crowded.status_code == 400 and "64 fields" in problem(crowded)
    assert client.get("/_emulator/clock").json()["now"] == 0
