"""Screenshots of the dashboard's main views for docs/dashboard.md.

    .venv/bin/python -m tests.ui_screenshots

Serves an emulator on a free loopback port (manual clock, seed 7), fills it with a few tasks,
a fault rule, a balance and a failure, and saves docs/dashboard-*.png from Debian's chromium.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from emulator import Settings

from .conftest import LiveServer
from .ui_browser import launch

DOCS = Path(__file__).resolve().parent.parent / "docs"
KEY = "sk-demo-app-0001"
UI = "/_emulator/ui"


def fill(base: str) -> str:
    """A few tasks at different points of their lives; the id of one that succeeded."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as api:
        api.put("/_emulator/balances/" + KEY, json={"balance": 5000})
        api.post(
            "/_emulator/faults",
            json={
                "id": "nsfw",
                "match": {"endpoint": "submit", "prompt_contains": "forbidden"},
                "effect": {"kind": "fail_task", "code": "content_policy_violation"},
                "times": 3,
            },
        )
        api.post(
            "/_emulator/faults",
            json={"effect": {"kind": "http_error", "status": 429, "retry_after": 2}, "times": 1},
        )
        api.post("/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})  # the 429
        bodies = [
            {"model": "NanoBanana2-0.5K", "prompt": "a lighthouse at dusk", "n": 2},
            {"model": "gpt-image-2", "prompt": "a blue glass sphere", "size": "1024x768"},
            {"model": "NanoBanana", "prompt": "something forbidden", "aspect_ratio": "16:9"},
        ]
        ids = [api.post("/v1/images/tasks", json=b).json()["data"]["task_id"] for b in bodies]
        api.post("/_emulator/clock/advance", json={"seconds": 60})
        for task_id in ids:
            api.get(f"/v1/images/tasks/{task_id}")
        later = [
            {"model": "NanoBananaPro-1K", "prompt": "a red bicycle", "aspect_ratio": "4:3"},
            {"model": "gpt-image-2", "prompt": "a paper crane", "size": "1536x1024", "n": 2},
        ]
        for body in later:
            api.post("/v1/images/tasks", json=body)
        api.post("/_emulator/clock/advance", json={"seconds": 6})
        return ids[0]


def main() -> None:
    with LiveServer(Settings(seed=7, clock="manual")) as server, sync_playwright() as pw:
        done = fill(server.base_url)
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1366, "height": 860})
        shots = {
            "tasks": UI,
            "task": f"{UI}/tasks/{done}",
            "faults": f"{UI}/faults",
            "billing": f"{UI}/billing",
            "settings": f"{UI}/settings",
        }
        for name, path in shots.items():
            page.goto(server.base_url + path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(DOCS / f"dashboard-{name}.png"), full_page=name != "settings")
            print(f"docs/dashboard-{name}.png")
        browser.close()


if __name__ == "__main__":
    main()
