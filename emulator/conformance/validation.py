"""schemathesis' response checks on conform's own exchanges: `Validator` runs them on an
answer (status, content type, headers, body schema, response time, and conform's custom
checks) through the public ``Case.validate_response`` and writes every result into the report,
so the scenarios, near misses and access checks find exactly what schemathesis' phases would.
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any

from .checks import CUSTOM_CHECKS, applies
from .client import Answer
from .deviations import Report
from .explain import Explainer
from .options import ConformOptions
from .samples import curl, excerpt, failure_sample

#: The response checks run on every exchange conform sends itself. Checks that re-send the
#: request (ignored_auth, ...) are left to the phases: a re-sent submission is a paid task.
RESPONSE_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


class Validator:
    """schemathesis' response checks for conform's own exchanges (one schema per run)."""

    def __init__(self, contract: dict[str, Any], options: ConformOptions, report: Report) -> None:
        import schemathesis
        from schemathesis.config import SchemathesisConfig

        checks: dict[str, Any] = {"enabled": False}
        checks.update({name: {"enabled": True} for name in (*RESPONSE_CHECKS, *CUSTOM_CHECKS)})
        if options.max_response_time is not None:
            checks["max_response_time"] = options.max_response_time
        config = SchemathesisConfig.from_dict({"checks": checks})
        self.schema = schemathesis.openapi.from_dict(contract, config=config)
        self.report = report
        self.explainer = Explainer(contract)
        self._results: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

        @self.schema.hook
        def after_validate(context: Any, case: Any, response: Any, results: Any) -> None:
            with self._lock:
                self._results[case.id] = list(results)

    def has(self, operation: str) -> bool:
        method, _, path = operation.partition(" ")
        return method.lower() in self.schema.raw_schema.get("paths", {}).get(path, {})

    def validate(
        self,
        answer: Answer,
        *,
        body: Any = None,
        media_type: str | None = None,
        path_parameters: dict[str, Any] | None = None,
    ) -> bool:
        """Run the checks on ``answer`` and report each; True when all passed."""
        from schemathesis.errors import FailureGroup

        if answer.response is None or not self.has(answer.operation):
            return answer.response is not None
        method, _, path = answer.operation.partition(" ")
        operation = self.schema[path][method]
        if path_parameters is None:
            path_parameters = path_values(path, answer.request.url.path)
        case_args: dict[str, Any] = {"path_parameters": path_parameters}
        if body is not None:
            case_args.update(body=body, media_type=media_type or "application/json")
        case = operation.Case(**case_args)
        with contextlib.suppress(FailureGroup):  # every failure is in the results below
            case.validate_response(answer.response)
        with self._lock:
            results = self._results.pop(case.id, [])
        ok = True
        for result in results:
            if result.failure is None:
                if applies(result.name, answer.operation):
                    self.report.passed(result.name, answer.operation)
                continue
            ok = False
            self.report.add(
                result.name,
                answer.operation,
                failure_sample(
                    result.name,
                    answer.operation,
                    result.failure,
                    answer.status,
                    answer.response.content,
                    self.explainer,
                    request=curl(answer.request),
                    response=excerpt(answer.response),
                ),
            )
        return ok


def path_values(template: str, path: str) -> dict[str, str]:
    """``{"task_id": "task_1"}`` from ``/v1/images/tasks/{task_id}`` and the path requested."""
    names = re.findall(r"{([^}]+)}", template)
    pattern = re.escape(template)
    for name in names:
        pattern = pattern.replace(re.escape("{" + name + "}"), "([^/]+)", 1)
    match = re.fullmatch(pattern, path)
    return dict(zip(names, match.groups(), strict=True)) if match else dict.fromkeys(names, "")
