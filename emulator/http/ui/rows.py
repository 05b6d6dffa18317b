"""What the dashboard shows, as plain data: task rows, a task's status history, rules and
settings with their secrets masked. Status and progress always come from the emulator's own
observation of a task (``Tasks.observe``), never computed a second way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...core.keys import mask_key
from ...core.query import one_of, query_values

if TYPE_CHECKING:
    from ...core.tasks import Task
    from ...stores import Store
    from ...usecases.poll import Tasks

STATUSES = ("queued", "processing", "succeeded", "failed")
#: Rows the live table shows at most (the newest that match).
ROW_LIMIT = 100
#: Tasks the live table looks at per refresh at most, newest first: a refresh a second must
#: stay cheap with 100,000 tasks stored, so a rare status is looked for among these only
#: (and the page says so).
SCAN_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """The dashboard's task list filter: a status and a model, either unset."""

    status: str | None = None
    model: str | None = None


def task_filter(items: Iterable[tuple[str, str]], models: tuple[str, ...]) -> TaskFilter:
    """The table's filters from a query; 400 naming a filter that is unknown, repeated or
    could never match (an empty value: no filter). The control plane's own rules
    (``core.query``), so the table and ``GET /_emulator/tasks`` refuse alike."""
    params = query_values(items, ("status", "model"), "filter")
    status = params.get("status") or None
    model = params.get("model") or None
    return TaskFilter(
        None if status is None else one_of("status", status, STATUSES),
        None if model is None else one_of("model", model, models),
    )


def seconds_text(seconds: float) -> str:
    """12.5 s, 3 min 20 s, 2 h 5 min: durations on any clock, for people."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def size_text(task: Task) -> str:
    pixels = f"{task.width}x{task.height}"
    label = task.aspect_ratio or task.size
    return pixels if not label or label == pixels else f"{label} · {pixels}"


async def task_row(tasks: Tasks, task: Task) -> dict[str, Any]:
    """One line of the task table: the task's fields, and its status, progress and elapsed
    time as the emulator observes them (``Steering.view`` without the task's full record and
    result URLs, which the table does not show: a refresh reads up to 1000 tasks)."""
    observation = await tasks.observe(task)
    return {
        "id": task.task_id,
        "owner": task.owner[:12],
        "model": task.model,
        "size": size_text(task),
        "n": task.n,
        "status": observation.status,
        "progress": observation.progress,
        "age": seconds_text(await tasks.elapsed(task)),
    }


async def task_rows(store: Store, tasks: Tasks, wanted: TaskFilter) -> dict[str, Any]:
    """The newest tasks that match ``wanted``: at most ``ROW_LIMIT`` rows, found among the
    newest ``SCAN_LIMIT`` tasks; with how many are stored and how many were looked at."""
    newest = await store.list_tasks(newest=SCAN_LIMIT)
    stored = await store.count_tasks()
    rows: list[dict[str, Any]] = []
    scanned = 0
    for task in reversed(newest):
        if len(rows) >= ROW_LIMIT or scanned >= SCAN_LIMIT:
            break
        scanned += 1
        if (wanted.model and task.model != wanted.model) or await tasks.is_expired(task):
            continue
        row = await task_row(tasks, task)
        if not wanted.status or row["status"] == wanted.status:
            rows.append(row)
    return {
        "rows": rows,
        "stored": stored,
        "scanned": scanned,
        "complete": scanned >= stored or len(rows) >= ROW_LIMIT,
    }


def history(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The task's status changes, from its schedule (fixed at submission, or when a forced
    outcome ended it): when each comes, seconds after submission, and whether it has come."""
    task = view["task"]
    schedule = task["schedule"]
    queued_s = schedule["queued_s"]
    end = schedule["end_s"]
    end = queued_s + schedule["processing_s"] if end is None else end
    steps = [("queued", 0.0)]
    if end > queued_s:
        steps.append(("processing", queued_s))
    steps.append((schedule["outcome"], end))
    elapsed = view["elapsed"]
    return [
        {
            "status": status,
            "after": seconds_text(offset),
            "clock": task["created_at"] + offset,
            "reached": elapsed >= offset,
        }
        for status, offset in steps
    ]


def masked_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A fault rule fit to show: the API key it matches on masked like the journal's."""
    out = dict(rule)
    match = dict(out.get("match") or {})
    if match.get("api_key"):
        match["api_key"] = mask_key(match["api_key"])
    out["match"] = match
    return out


def match_text(match: Mapping[str, Any]) -> str:
    parts = [
        f"{name} = {value}"
        for name, value in match.items()
        if value is not None and name != "headers"
    ]
    parts += [f"header {name}: {value}" for name, value in (match.get("headers") or {}).items()]
    return ", ".join(parts) or "every request"


def effect_text(effect: Mapping[str, Any]) -> str:
    details = [
        f"{name} {value}" for name, value in effect.items() if name != "kind" and value is not None
    ]
    kind: str = effect["kind"]
    return kind + (f" ({', '.join(details)})" if details else "")


__all__ = [
    "ROW_LIMIT",
    "SCAN_LIMIT",
    "STATUSES",
    "TaskFilter",
    "effect_text",
    "history",
    "masked_rule",
    "match_text",
    "seconds_text",
    "size_text",
    "task_filter",
    "task_row",
    "task_rows",
]
