"""Fault rules are bounded the same way whichever way they come in: the control plane, the fault
file (or the config's ``[[faults]]``) and the pytest fixture's handle. At most
``max_fault_rules`` rules, every text field within its length; a refusal names the field (or
the setting) and the rule it breaks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Settings, create_app
from emulator.config import ConfigError, build_settings
from emulator.testing.app_loop import AppLoop
from emulator.testing.handle import ImageEmulator

from .conftest import MakeClient


@pytest.fixture
def make_handle() -> Iterator[Any]:
    made: list[tuple[ImageEmulator, AppLoop, Any]] = []

    def make(**overrides: Any) -> ImageEmulator:
        app = create_app(Settings(seed=1, clock="manual").replace(**overrides))
        loop = AppLoop()
        handle = ImageEmulator(app, loop, "http://image-emulator.test", in_process=True)
        made.append((handle, loop, app))
        return handle

    yield make
    for handle, loop, app in made:
        handle.close()
        loop.close(last=app.state.emulator.store.close())


def test_a_fault_file_of_more_rules_than_the_cap_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"effect": "drop"}] * 1001))
    with pytest.raises(ConfigError, match=r"at most 1000 fault rules.*max_fault_rules"):
        create_app(Settings(fault_file=str(path)))


def test_config_rules_and_the_fault_file_count_together(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"effect": "drop"}] * 2))
    settings = build_settings(overrides={"faults": [{"effect": "empty"}], "max_fault_rules": 2})
    with pytest.raises(ConfigError, match=r"at most 2 fault rules.*max_fault_rules"):
        create_app(settings.replace(fault_file=str(path)))


def test_config_rules_beyond_the_cap_are_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"faults.*at most 1 fault rules.*max_fault_rules"):
        build_settings(overrides={"faults": [{"effect": "drop"}] * 2, "max_fault_rules": 1})


def test_max_fault_rules_has_a_range() -> None:
    for bad in (0, 10**7):
        with pytest.raises(ConfigError, match="max_fault_rules must be between 1 and 100000"):
            build_settings(overrides={"max_fault_rules": bad})


def test_the_control_plane_refuses_rules_beyond_the_setting(make_client: MakeClient) -> None:
    client = make_client(max_fault_rules=3)
    assert client.post("/_emulator/faults", json=[{"effect": "drop"}] * 2).status_code == 201
    response = client.post("/_emulator/faults", json=[{"effect": "drop"}] * 2)
    assert response.status_code == 400
    message = response.json()["message"]
    assert "at most 3 fault rules" in message and "max_fault_rules" in message
    assert len(client.get("/_emulator/faults").json()["faults"]) == 2  # nothing added


def test_the_fixture_refuses_rules_beyond_the_setting(make_handle: Any) -> None:
    handle = make_handle(max_fault_rules=2)
    handle.faults.add("drop")
    handle.faults.add("empty")
    with pytest.raises(ValueError, match=r"at most 2 fault rules.*max_fault_rules"):
        handle.faults.add("malformed")
    assert len(list(handle.faults)) == 2


LONG_TEXTS = [
    ({"effect": "drop", "match": {"prompt_contains": "p" * 32_001}}, "prompt_contains", 32000),
    ({"effect": "drop", "match": {"headers": {"X-A": "v" * 8193}}}, "headers", 8192),
    ({"effect": {"kind": "fail_task", "code": "c" * 129}}, "code", 128),
    ({"effect": {"kind": "fail_task", "message": "m" * 4097}}, "message", 4096),
    ({"effect": {"kind": "http_error", "status": 503, "code": "c" * 129}}, "code", 128),
    ({"effect": "drop", "match": {"model": "m" * 257}}, "model", 256),
    ({"effect": "drop", "match": {"api_key": "k" * 4097}}, "api_key", 4096),
    ({"effect": "drop", "id": "i" * 129}, "id", 128),
]


@pytest.mark.parametrize(("rule", "field", "limit"), LONG_TEXTS)
def test_every_text_field_is_bounded_on_every_way_in(
    make_client: MakeClient, make_handle: Any, tmp_path: Path, rule: Any, field: str, limit: int
) -> None:
    response = make_client().post("/_emulator/faults", json=rule)
    assert response.status_code == 400
    assert field in response.json()["message"] and str(limit) in response.json()["message"]
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([rule]))
    with pytest.raises(ConfigError, match=rf"{field}.*{limit}"):
        create_app(Settings(fault_file=str(path)))
    handle = make_handle()
    effect = rule["effect"]
    with pytest.raises(ValueError, match=rf"{field}.*{limit}"):
        handle.faults.add(effect, id=rule.get("id"), **rule.get("match", {}))
