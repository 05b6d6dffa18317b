"""Names what is wrong with an answer body, field by field, formats included.

schemathesis reports a failed ``oneOf`` (wrapped or bare task) only as "not valid under any of
the given schemas"; `Explainer` picks the branch the body meant (the one whose required members
it has) and lists that branch's errors, with formats checked (a relative ``result_url`` is "not
a 'uri'"). jsonschema-rs, which schemathesis itself validates with, checks the formats.
"""

from __future__ import annotations

import json
from typing import Any

#: Problems listed per answer at most.
MAX_PROBLEMS = 5


class Explainer:
    """Explains answers against one contract (a dict, as loaded)."""

    def __init__(self, contract: dict[str, Any]) -> None:
        self.contract = contract
        self.components = contract.get("components", {})

    def response_schema(self, operation: str, status: int) -> dict[str, Any] | None:
        """The JSON schema the contract gives the answer ``status`` of ``operation``
        (``"GET /v1/images/tasks/{task_id}"``), or None."""
        method, _, path = operation.partition(" ")
        item = self.contract.get("paths", {}).get(path, {}).get(method.lower())
        if not isinstance(item, dict):
            return None
        responses = item.get("responses", {})
        response = responses.get(str(status)) or responses.get(f"{status // 100}XX")
        response = self._deref(response or responses.get("default"))
        if not isinstance(response, dict):
            return None
        content = response.get("content", {}).get("application/json", {})
        schema = content.get("schema")
        return schema if isinstance(schema, dict) else None

    def problems(self, operation: str, status: int, body: bytes) -> tuple[str, list[str]]:
        """(the schema's name, what is wrong); ``("", [])`` when nothing can be said."""
        schema = self.response_schema(operation, status)
        try:
            data = json.loads(body)
        except ValueError:
            return "", []
        if schema is None:
            return "", []
        name, chosen = self._branch(schema, data)
        return name, self._errors(chosen, data)

    def explain(self, operation: str, status: int, body: bytes) -> str:
        """One line: ``as Task: result_url: "/x" is not a "uri"; ...`` or ``""``."""
        name, problems = self.problems(operation, status, body)
        if not problems:
            return ""
        return f"as {name or 'the documented body'}: " + "; ".join(problems[:MAX_PROBLEMS])

    # -- helpers ---------------------------------------------------------------------------
    def _deref(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 20:
            target: Any = self.contract
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            node, seen = target, seen + 1
        return node

    def _branch(self, schema: dict[str, Any], data: Any) -> tuple[str, dict[str, Any]]:
        """The schema itself, or for a ``oneOf`` the branch ``data`` was meant to match."""
        name = _ref_name(schema)
        resolved = self._deref(schema)
        branches = resolved.get("oneOf") if isinstance(resolved, dict) else None
        if not isinstance(branches, list) or not isinstance(data, dict):
            return name, schema
        scored = []
        for branch in branches:
            required = self._deref(branch).get("required", [])
            present = sum(1 for member in required if member in data)
            scored.append((present == len(required), present, -len(self._errors(branch, data))))
        best = max(range(len(branches)), key=lambda i: scored[i])
        return _ref_name(branches[best]), branches[best]

    def _errors(self, schema: dict[str, Any], data: Any) -> list[str]:
        import jsonschema_rs

        validator = jsonschema_rs.Draft202012Validator(
            {**schema, "components": self.components}, validate_formats=True
        )
        return [
            f"{'/'.join(map(str, error.instance_path)) or '(body)'}: {error.message}"
            for error in validator.iter_errors(data)
        ]


def _ref_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else ""
