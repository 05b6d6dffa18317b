"""Settings: one object, built once, from defaults < TOML file < environment < CLI flags
(`settings`), each value checked against its type, range and length (`values`)."""

from __future__ import annotations

from ..errors import ConfigError
from .fault_file import load_fault_file, parse_faults
from .settings import (
    DEFAULT_STATE_DIR,
    FIXED_SETTINGS,
    SETTING_NAMES,
    Settings,
    build_settings,
    checked,
    load_toml,
    settings_from_environment,
    settings_from_flags,
)

__all__ = [
    "DEFAULT_STATE_DIR",
    "FIXED_SETTINGS",
    "SETTING_NAMES",
    "ConfigError",
    "Settings",
    "build_settings",
    "checked",
    "load_fault_file",
    "load_toml",
    "parse_faults",
    "settings_from_environment",
    "settings_from_flags",
]
