"""docs/control-plane.md's examples run as tests: every ``python`` block, against a fresh
in-process emulator, so a page that drifts from the behaviour fails here.

A block sees ``client`` (an HTTP client of the emulator: manual clock, seed 1, bearer key
``sk-test-key``) and ``access_lines`` (the JSON access lines its requests wrote, parsed); a
first line ``# settings: {...}`` (JSON) gives the emulator those settings (an ``admin_token``
among them is not sent: a block shows what needs it).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from emulator import Settings, create_app
from emulator.http.access_log import LOGGER

from .conftest import AUTH, Client

DOC = Path(__file__).parent.parent / "docs" / "control-plane.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
SETTINGS = re.compile(r"# settings: (\{.*\})\n")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))


def test_the_page_has_examples_of_what_it_promises() -> None:
    text = "\n".join(BLOCKS)
    for needle in ('"respond"', "/healthz", "cors_origins", "log_format", '"hang"'):
        assert needle in text, needle


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_control_plane_example_holds(index: int) -> None:
    block = BLOCKS[index]
    given = SETTINGS.match(block)
    overrides = json.loads(given.group(1)) if given else {}
    settings = Settings(seed=1, clock="manual").replace(**overrides)
    logger, capture = logging.getLogger(LOGGER), _Lines()
    level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        with Client(create_app(settings), headers=AUTH) as client:
            exec(
                compile(block, f"{DOC.name}[{index}]", "exec"),
                {
                    "client": client,
                    "access_lines": capture.lines,
                },
            )
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)


def test_the_settings_patch_refuses_are_the_ones_the_page_and_the_contract_list() -> None:
    """control-plane.md's and the contract's lists of settings fixed at start-up are
    FIXED_SETTINGS (the page once missed log_format and cors_origins)."""
    from emulator.config import FIXED_SETTINGS
    from emulator.contract import contract_path

    fences = {"fetch_reference_urls", "fetch_allow_hosts", "fetch_allow_private"}
    row = re.search(
        r"PATCH changes those that may change while serving \(not (.*?): restart",
        DOC.read_text("utf-8"),
    )
    assert row is not None
    listed = set(re.findall(r"`(\w+)`", row.group(1))) - {"fetch_"}
    assert "the `fetch_*` fences" in row.group(1)
    assert listed | fences == FIXED_SETTINGS
    contract = contract_path("emulator").read_text("utf-8")
    found = re.search(r"except those fixed at start-up \((.*?)\) may change", contract, re.S)
    assert found is not None
    named = {n.strip() for n in " ".join(found.group(1).split()).split(",")}
    assert "the fetch_* fences" in named
    assert (named - {"the fetch_* fences"}) | fences == FIXED_SETTINGS


JSON_RULES = re.findall(r"```json\n(.*?)```", DOC.read_text("utf-8"), re.S)


@pytest.mark.parametrize("index", range(len(JSON_RULES)))
def test_a_json_rule_of_the_page_installs_as_shown(index: int, tmp_path: Path) -> None:
    """The page's ``json`` fault rules are taken as written, by the control plane and as a
    fault file (a JSON list), with the id, limits and effect they show."""
    from emulator.config import load_fault_file

    rule = json.loads(JSON_RULES[index])
    with Client(create_app(Settings(seed=1, clock="manual")), headers=AUTH) as client:
        answer = client.post("/_emulator/faults", json=rule)
        assert answer.status_code in (200, 201), answer.text
        listed = client.get("/_emulator/faults").json()
    (installed,) = listed["faults"]
    for part in ("match", "effect"):  # what the page gives; the rest takes its default
        assert {k: installed[part][k] for k in rule[part]} == rule[part]
    rest = {k: v for k, v in rule.items() if k not in ("match", "effect")}
    assert {k: installed[k] for k in rest} == rest
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([rule]))
    (loaded,) = load_fault_file(str(path))
    assert loaded.id == rule["id"] and loaded.times == rule["times"]
