"""Fault rules as settings give them: the ``faults`` setting (a TOML list of tables, a JSON
text from the environment, or rules) and a ``fault_file`` (TOML ``[[faults]]`` or JSON), each
rule checked by ``core.fault_parsing`` and a refusal naming where it came from."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from ..core.fault_parsing import FaultError, parse_rule
from ..core.faults import FaultRule
from ..errors import ConfigError


def parse_faults(value: Any, source: str) -> tuple[FaultRule, ...]:
    """Fault rules from a list of tables (TOML), a JSON text (environment), or rules."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"setting 'faults' (from {source}) is not JSON: {exc}") from None
    if not isinstance(value, list | tuple):
        raise ConfigError(f"setting 'faults' (from {source}) must be a list of rules")
    rules: list[FaultRule] = []
    for i, raw in enumerate(value):
        if isinstance(raw, FaultRule):
            rules.append(raw)
            continue
        try:
            rules.append(parse_rule(raw, f"rule-{i + 1}", f"faults[{i}]"))
        except FaultError as exc:
            raise ConfigError(f"setting 'faults' (from {source}): {exc}") from None
    return tuple(rules)


def load_fault_file(path: str | Path) -> tuple[FaultRule, ...]:
    """Rules from a TOML file of ``[[faults]]`` tables or a JSON list (or ``{"faults": [...]}``)."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"fault file {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        data: Any = json.loads(text) if str(path).endswith(".json") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"fault file {str(path)!r} cannot be parsed: {exc}") from None
    if isinstance(data, dict):
        data = data.get("faults", [])
    return parse_faults(data, f"fault file {str(path)!r}")


__all__ = ["load_fault_file", "parse_faults"]
