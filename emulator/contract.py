"""The OpenAPI contracts: where they live and how to load them (``emulator.http.openapi`` serves
them).

``contracts/image-tasks.openapi.yaml`` describes only the real service; ``contracts/
emulator.openapi.yaml`` describes what only the emulator has (result images, the control plane).
The emulator serves both, as written (YAML) and as JSON:

- ``/openapi.yaml``, ``/openapi.json``: the real API;
- ``/_emulator/openapi.yaml``, ``/_emulator/openapi.json``: the emulator's own routes.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

ContractName = Literal["image-tasks", "emulator"]
CONTRACT_FILES: dict[ContractName, str] = {
    "image-tasks": "image-tasks.openapi.yaml",
    "emulator": "emulator.openapi.yaml",
}


def contracts_dir() -> Path:
    """The directory holding the contract files.

    A source checkout or an editable install keeps them in the top-level ``contracts/`` beside
    the package; a built wheel ships them inside the package as ``emulator/contracts/``.
    """
    packaged = resources.files("emulator").joinpath("contracts")
    if packaged.is_dir():
        return Path(str(packaged))
    beside = Path(__file__).resolve().parent.parent / "contracts"
    if beside.is_dir():
        return beside
    raise FileNotFoundError(
        f"the OpenAPI contracts are neither in {packaged} nor in {beside}; reinstall the package"
    )


def contract_path(name: ContractName = "image-tasks") -> Path:
    """Path of one contract file."""
    return contracts_dir() / CONTRACT_FILES[name]


@functools.cache
def contract_text(name: ContractName = "image-tasks") -> str:
    """The contract exactly as written (YAML)."""
    return contract_path(name).read_text("utf-8")


@functools.cache
def _contract_json(name: ContractName) -> bytes:
    import yaml  # only when a contract is asked for as JSON: importing it slows every start-up

    return json.dumps(yaml.safe_load(contract_text(name)), ensure_ascii=False).encode("utf-8")


def load_contract(name: ContractName = "image-tasks") -> dict[str, Any]:
    """The contract as a fresh dict (safe to modify)."""
    data: dict[str, Any] = json.loads(_contract_json(name))
    return data


def contract_json(name: ContractName = "image-tasks") -> bytes:
    """The contract as JSON bytes (converted once per process)."""
    return _contract_json(name)


__all__ = [
    "ContractName",
    "contract_json",
    "contract_path",
    "contract_text",
    "contracts_dir",
    "load_contract",
]
