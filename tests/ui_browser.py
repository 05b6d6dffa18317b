"""Debian's chromium driven by Playwright, for the dashboard's browser tests and screenshots.

``playwright install`` is never run (it downloads a browser of its own, which this project
cannot): Playwright drives the chromium that ``make setup`` installs, by path. A missing
browser is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

#: Without these chromium reaches for the (closed) network: updates, sync, field trials.
#: ``--no-sandbox``: the tests run as root, where chromium's sandbox refuses to start.
#: Playwright adds ``--headless`` and a fresh ``--user-data-dir`` of its own to every launch.
ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_path() -> str:
    """Where chromium is: ``$UI_CHROMIUM``, else ``chromium`` on the PATH, else Debian's."""
    return os.environ.get("UI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def launch(playwright: Playwright) -> Browser:
    path = chromium_path()
    if not Path(path).is_file():
        raise RuntimeError(
            f"chromium is not installed ({path} does not exist): `make setup` installs "
            "Debian's chromium when run as root (apt-get install chromium)"
        )
    return playwright.chromium.launch(executable_path=path, headless=True, args=list(ARGS))
