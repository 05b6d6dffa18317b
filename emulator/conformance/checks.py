"""Checks of one task answer that a JSON schema cannot express, as schemathesis custom checks.

- ``submission_is_queued``: a submission answers the new task, ``queued`` at ``0%``, with no
  result and no error (SPEC 2.6).
- ``task_type_inferred``: ``metadata.task_type`` is the explicit ``task_type``, else
  ``image2image`` exactly when the submission carried ``image``, ``images`` or a file.
- ``result_count_consistent``: ``result_count`` equals the number of ``result_urls`` when they
  are listed, and ``result_url`` is the first of them.

schemathesis keeps custom checks in one process-wide registry, so each check acts only on schemas
that carry `MARKER` (conform adds it to the contract it loads): another schemathesis run in the
same process is untouched. The checks keep no state.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

#: Root key conform adds to the contract it hands schemathesis; the checks act only there.
MARKER = "x-image-task-conform"
SUBMIT = "POST /v1/images/tasks"
POLL = "GET /v1/images/tasks/{task_id}"
CUSTOM_CHECKS = ("submission_is_queued", "task_type_inferred", "result_count_consistent")
#: The operations each custom check looks at (it passes trivially on the others).
_APPLIES = {
    "submission_is_queued": (SUBMIT,),
    "task_type_inferred": (SUBMIT,),
    "result_count_consistent": (SUBMIT, POLL),
}


def applies(check: str, operation: str) -> bool:
    """Whether ``check`` says anything about ``operation`` (for the list of what ran)."""
    return operation in _APPLIES.get(check, (operation,))


# -- reading answers and requests (shared with the scenarios) --------------------------------------
def unwrap(data: Any) -> tuple[str, dict[str, Any]] | None:
    """(envelope, task) of a task answer: ``("wrapped", data["data"])`` or ``("bare", data)``."""
    if not isinstance(data, dict):
        return None
    inner = data.get("data")
    if isinstance(inner, dict) and "task_id" in inner:
        return "wrapped", inner
    if "task_id" in data:
        return "bare", data
    return None


def expected_task_type(body: Any, uploaded: bool = False) -> str | None:
    """What ``metadata.task_type`` must say for a submission ``body`` (SPEC 2.2); None: unknown."""
    if not isinstance(body, dict):
        return None
    explicit = body.get("task_type")
    if explicit in ("text2image", "image2image"):
        return str(explicit)
    if explicit is not None:
        return None  # an invalid value: the service refuses it, nothing to infer
    pictures = uploaded or any(body.get(name) not in (None, "", []) for name in ("image", "images"))
    return "image2image" if pictures else "text2image"


def settled(value: Any) -> Any:
    """``value`` with every URL's query left out: a CDN may sign a result URL afresh for each
    answer (a new expiry, a new signature), and that does not change the result."""
    if isinstance(value, dict):
        return {k: settled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [settled(v) for v in value]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return urlsplit(value)._replace(query="", fragment="").geturl()
    return value


def submission_problems(task: dict[str, Any]) -> list[str]:
    """What is wrong with a submission's answer for a brand-new task."""
    problems = []
    status, progress = task.get("status"), task.get("progress")
    if status != "queued" or progress != "0%":
        problems.append(
            f"the submission answered status {status!r} at progress {progress!r}; a new task is "
            "'queued' at '0%'"
        )
    metadata = task.get("metadata")
    count = metadata.get("result_count") if isinstance(metadata, dict) else None
    if count not in (0, None):
        problems.append(f"the submission answered result_count {count!r}; a new task has 0")
    if task.get("result_url") is not None:
        problems.append("the submission answered a result_url; a new task has none")
    if task.get("error") is not None:
        problems.append(f"the submission answered an error {task.get('error')!r} with a 2xx")
    return problems


def result_problems(task: dict[str, Any]) -> list[str]:
    """Disagreements between result_count, result_urls and result_url of one answer."""
    metadata = task.get("metadata")
    if not isinstance(metadata, dict):
        return []
    count, urls, first = metadata.get("result_count"), metadata.get("result_urls"), None
    problems = []
    if isinstance(urls, list):
        first = urls[0] if urls else None
        if isinstance(count, int) and count != len(urls):
            problems.append(f"result_count is {count} but result_urls lists {len(urls)} URL(s)")
        if len({str(settled(u)) for u in urls}) != len(urls):
            problems.append("result_urls lists one URL more than once")
        if first is not None and settled(task.get("result_url")) != settled(first):
            problems.append(
                f"result_url {task.get('result_url')!r} is not the first of result_urls ({first!r})"
            )
    return problems


def task_id_of(case: Any) -> str:
    try:
        return str(case.path_parameters.get("task_id", "")) or "the task"
    except AttributeError:
        return "the task"


# -- the schemathesis checks -------------------------------------------------------------------
def _task_answer(response: Any, case: Any, labels: tuple[str, ...]) -> dict[str, Any] | None:
    """The task in ``response`` when the check applies to this exchange, else None."""
    schema = case.operation.schema
    if not getattr(schema, "raw_schema", {}).get(MARKER):
        return None
    if case.operation.label not in labels or not 200 <= response.status_code < 300:
        return None
    try:
        unwrapped = unwrap(response.json())
    except ValueError:
        return None  # not JSON: content_type_conformance and the schema check say so
    return unwrapped[1] if unwrapped else None


def submission_is_queued(ctx: Any, response: Any, case: Any) -> bool | None:
    task = _task_answer(response, case, (SUBMIT,))
    if task is not None:
        problems = submission_problems(task)
        if problems:
            raise AssertionError(f"{task.get('task_id')}: " + "; ".join(problems))
    return None


def task_type_inferred(ctx: Any, response: Any, case: Any) -> bool | None:
    task = _task_answer(response, case, (SUBMIT,))
    if task is None:
        return None
    body = case.body
    uploaded = (
        (case.media_type or "").startswith("multipart/")
        and isinstance(body, dict)
        and (body.get("image") is not None)
    )
    expected = expected_task_type(body, uploaded)
    metadata = task.get("metadata")
    got = metadata.get("task_type") if isinstance(metadata, dict) else None
    if expected is not None and got != expected:
        raise AssertionError(
            f"{task.get('task_id')}: task_type is {got!r} but the submission asks for "
            f"{expected!r} ({_why(body, uploaded)})"
        )
    return None


def result_count_consistent(ctx: Any, response: Any, case: Any) -> bool | None:
    task = _task_answer(response, case, (SUBMIT, POLL))
    if task is not None:
        problems = result_problems(task)
        if problems:
            raise AssertionError(f"{task.get('task_id')}: " + "; ".join(problems))
    return None


def _why(body: Any, uploaded: bool) -> str:
    if isinstance(body, dict) and body.get("task_type") is not None:
        return f"explicit task_type {body['task_type']!r}"
    if uploaded:
        return "an uploaded picture, no task_type"
    given = [name for name in ("image", "images") if isinstance(body, dict) and body.get(name)]
    return f"inferred from {' and '.join(given)}" if given else "no picture, no task_type"


def register() -> None:
    """Register the checks with schemathesis (idempotent)."""
    import schemathesis

    for check in (submission_is_queued, task_type_inferred, result_count_consistent):
        schemathesis.check(check)
