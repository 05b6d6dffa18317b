"""How conform drives schemathesis' phases safely: the narrowed contract and the run's hooks.

`restrict_to_model` narrows submissions to one model with ``n = 1`` in JSON; `install_hooks`
drops known false positives (contracts/false-positives.toml), gives multipart cases a real
picture, counts every exchange, and makes each submission draw from the run's `TaskBudget`
(`TaskCapReached` instead of sending one the budget cannot pay for; a refused one is given back).
"""

from __future__ import annotations

import copy
import io
import json
import threading
import tomllib
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..contract import contracts_dir, load_contract
from .budget import TaskBudget, TaskCapReached, refused
from .checks import SUBMIT
from .deviations import Report
from .options import ConformOptions


def caused_by_cap(exc: BaseException | None) -> bool:
    """Whether ``exc`` is (or wraps, as schemathesis' hook errors do) a `TaskCapReached`."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TaskCapReached):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def contract_of(options: ConformOptions) -> dict[str, Any]:
    """The contract a run checks: ``options.contract``, else the packaged real-API one."""
    if options.contract is None:
        return load_contract()
    import yaml

    loaded: dict[str, Any] = json.loads(
        json.dumps(yaml.safe_load(options.contract.read_text("utf-8")))
    )
    return loaded


def submit_models(contract: dict[str, Any]) -> list[str]:
    """Every model the contract's submissions name (none: it has no SubmitRequest)."""
    schemas = contract.get("components", {}).get("schemas", {})
    submit = schemas.get("SubmitRequest", {})
    models: list[str] = []
    for ref in submit.get("oneOf", [submit] if "$ref" in submit else []):
        branch = schemas.get(str(ref.get("$ref", "")).rsplit("/", 1)[-1], {})
        enum = branch.get("properties", {}).get("model", {}).get("enum", [])
        models += [str(m) for m in enum if str(m) not in models]
    return models


def restrict_to_model(contract: dict[str, Any], model: str) -> dict[str, Any]:
    """The contract narrowed so schemathesis submits only ``model`` with ``n = 1`` in JSON.

    A paid service then never gets a bigger or pricier task than the cheapest one; the
    multipart form (file uploads) and examples of other models are dropped.
    """
    narrowed = copy.deepcopy(contract)
    schemas = narrowed["components"]["schemas"]
    branches = [
        ref["$ref"].rsplit("/", 1)[-1]
        for ref in schemas["SubmitRequest"]["oneOf"]
        if model in schemas[ref["$ref"].rsplit("/", 1)[-1]]["properties"]["model"]["enum"]
    ]
    if not branches:
        raise ValueError(f"model {model!r} is not in the contract")
    branch = schemas[branches[0]]
    branch["properties"]["model"]["enum"] = [model]
    branch["properties"]["n"] = {"type": "integer", "enum": [1]}
    branch["required"] = sorted({*branch["required"], "n"})
    schemas["SubmitRequest"] = {"$ref": f"#/components/schemas/{branches[0]}"}
    content = narrowed["paths"]["/v1/images/tasks"]["post"]["requestBody"]["content"]
    content.pop("multipart/form-data", None)
    examples = content["application/json"].get("examples", {})
    for name in [n for n, ex in examples.items() if ex["value"].get("model") != model]:
        del examples[name]
    return narrowed


def install_hooks(
    schema: Any, budget: TaskBudget, report: Report, tick: Callable[[], None]
) -> tuple[Callable[..., None], Counter[str]]:
    """Install this run's hooks; returns the global one (to unregister after the run) and the
    count, per phase, of submissions not sent for want of budget."""
    from .privates import Binary

    lock = threading.Lock()
    picture = reference_picture()
    known = _false_positives()
    capped: Counter[str] = Counter()

    @schema.hook  # type: ignore[untyped-decorator]
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        operation_id = case.operation.definition.raw.get("operationId")
        media_type = (case.media_type or "").split(";")[0]
        for entry in known:
            if (
                entry["check"] in failure.checks
                and entry["operation-id"] == operation_id
                and entry["media-type"] == media_type
                and entry["message"] in failure.message
            ):
                with lock:
                    report.false_positives[f"{entry['check']} @ {operation_id} ({media_type})"] += 1
                return False
        return True

    @schema.hook  # type: ignore[untyped-decorator]
    def map_case(context: Any, case: Any) -> Any:
        # schemathesis fills a `format: binary` part with random bytes; the contract says the
        # `image` file is a real picture, so schema-valid cases get one.
        body = case.body
        if (
            isinstance(body, dict)
            and isinstance(body.get("image"), Binary | bytes)
            and (case.media_type or "").startswith("multipart/")
            and not _is_negative(case)
        ):
            body["image"] = Binary(picture)
        return case

    @schema.hook  # type: ignore[untyped-decorator]
    def after_call(context: Any, case: Any, response: Any) -> None:
        if case.operation.label == SUBMIT and refused(response.status_code):
            budget.give_back()
        content_type = (response.headers.get("content-type") or [""])[0]
        report.exchange(
            case.operation.label,
            response.status_code,
            content_type,
            response.content or b"",
            phase=_phase_of(case),
        )
        tick()

    @schema.hook  # type: ignore[untyped-decorator]
    def after_network_error(context: Any, case: Any, request: Any) -> None:
        # No answer: the submission may have created a task, so it stays spent.
        report.exchange(case.operation.label, None, phase=_phase_of(case))
        tick()

    def before_call(context: Any, case: Any, kwargs: Any) -> None:
        # schemathesis dispatches before_call only globally: act on this run's schema only.
        if getattr(case.operation, "schema", None) is not schema:
            return
        if case.operation.label == SUBMIT and not budget.take():
            with lock:
                capped[_phase_of(case)] += 1
            report.skipped.append(
                f"schemathesis' submissions beyond the task budget of {budget.limit} (--max-tasks)"
            )
            raise TaskCapReached(f"the run may create at most {budget.limit} tasks")

    return before_call, capped


def _phase_of(case: Any) -> str:
    phase = getattr(getattr(case, "meta", None), "phase", None)
    name = getattr(phase, "name", None)
    return str(getattr(name, "value", name) or "?")


def _false_positives() -> list[dict[str, str]]:
    path = contracts_dir() / "false-positives.toml"
    if not path.exists():
        return []
    entries: list[dict[str, str]] = tomllib.loads(path.read_text("utf-8"))["false-positive"]
    return entries


def _is_negative(case: Any) -> bool:
    meta = getattr(case, "meta", None)
    generation = getattr(meta, "generation", None)
    mode = getattr(generation, "mode", None)
    return bool(getattr(mode, "is_negative", False))


def reference_picture(size: tuple[int, int] = (16, 16)) -> bytes:
    """A small real PNG: the picture conform uploads."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, "PNG")
    return out.getvalue()
