"""Each guess of the contract (``x-assumption: D-n``) against what the real service answered.

For every decision the contract marks, the recordings *confirm* it (an exchange where the
guess could have been wrong, and was not), *contradict* it (one where it was wrong: the line
says what the service did, and the setting that matches it when there is one), or *do not
touch* it. A contradiction wins over any number of confirmations.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.catalogue import parse_size
from ..core.checks import is_blank
from ..usecases.submission import unknown_fields
from .evidence import Evidence, Sent, code_of, message_of

CONFIRMS, CONTRADICTS, UNTOUCHED = "confirms", "contradicts", "does not touch"
#: Examples kept per verdict.
EXAMPLES = 2
NANO_MAX_N = 4
TIER_WORDS = ("0.5k", "1k", "2k", "4k", "8k", "auto")
#: The refusals D-9 documents for the task routes.
DOCUMENTED_STATUSES = (400, 401, 403, 404, 413, 415, 429)
DOCUMENTED_400_CODES = ("invalid_request", "model_not_found", "task_not_exist")


@dataclass(slots=True)
class Verdict:
    name: str
    confirmed: list[str] = field(default_factory=list)
    contradicted: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.contradicted:
            return CONTRADICTS
        return CONFIRMS if self.confirmed else UNTOUCHED

    def line(self) -> str:
        said = self.contradicted or self.confirmed
        count = len(said)
        examples = "; ".join(dict.fromkeys(said))
        shown = examples if len(examples) <= 200 else examples[:199] + "…"
        return f"{self.name}: {self.outcome}" + (f" ({count} exchange(s)): {shown}" if said else "")


Judge = Callable[[Evidence, Verdict], None]


def _nano(fields: dict[str, Any]) -> bool:
    return str(fields.get("model", "")).startswith("NanoBanana")


def _names(sent: Sent, name: str) -> bool:
    """Whether a refusal's message names ``name``."""
    return re.search(rf"\b{re.escape(name)}\b", message_of(sent.data)) is not None


def _submissions(evidence: Evidence) -> list[tuple[Sent, dict[str, Any]]]:
    return [
        (s, s.fields)
        for s in evidence.sent
        if s.exchange.kind == "submit" and s.fields is not None and s.status is not None
    ]


def judge_auth(evidence: Evidence, v: Verdict) -> None:
    for s in evidence.sent:
        if s.status == 401:
            error = s.data.get("error") if isinstance(s.data, dict) else None
            if isinstance(error, dict) and {"message", "type", "code"} <= set(error):
                v.confirmed.append("a refused key got 401 with the OpenAI-style body")
            else:
                v.contradicted.append(f"a 401 answered {_short(s.data)}, not {{error: {{...}}}}")
        elif not s.exchange.keyed and s.ok:
            v.contradicted.append(f"{s.operation} without a key answered {s.status}")
    for task in evidence.tasks.values():
        for s in task.foreign:
            if s.exchange.keyed and s.ok:
                v.contradicted.append(f"another key could read {task.task_id}")


def judge_envelope(evidence: Evidence, v: Verdict) -> None:
    for s in evidence.sent:
        if s.envelope == "wrapped":
            v.confirmed.append("task answers are wrapped ({code, message, data})")
        elif s.envelope == "bare":
            v.confirmed.append('task answers are bare task objects (envelope = "bare")')
        elif s.ok:
            v.contradicted.append(f"a {s.status} answered {_short(s.data)}: neither shape")
        elif s.status is not None and 400 <= s.status < 500 and s.status != 401:
            if isinstance(s.data, dict) and {"code", "message", "data"} <= set(s.data):
                v.confirmed.append("refusals use {code, message, data: null}")
            else:
                v.contradicted.append(f"a {s.status} refusal answered {_short(s.data)}")


def judge_result_urls(evidence: Evidence, v: Verdict) -> None:
    for s in evidence.sent:
        task = s.task or {}
        if task.get("status") != "succeeded" or not isinstance(task.get("metadata"), dict):
            continue
        count, urls = task["metadata"].get("result_count"), task["metadata"].get("result_urls")
        if isinstance(count, int) and count > 1:
            if isinstance(urls, list) and len(urls) == count:
                v.confirmed.append(f"{count} results are listed in result_urls")
            else:
                v.contradicted.append(f"result_count {count} without result_urls listing them")
        elif urls is not None:
            v.confirmed.append("one result is listed too (always_list_results = true)")
        else:
            v.confirmed.append("one result is given as result_url only")


def judge_error(evidence: Evidence, v: Verdict) -> None:
    for s in evidence.sent:
        task = s.task or {}
        if task.get("status") != "failed":
            continue
        error = task.get("error")
        if isinstance(error, dict) and {"code", "message"} <= set(error):
            v.confirmed.append("a failed task's error is {code, message}")
        elif isinstance(error, str):
            v.contradicted.append(
                f'a failed task\'s error is the text {_short(error)} (error_shape = "string")'
            )
        else:
            v.contradicted.append(f"a failed task's error is {_short(error)}")


def judge_nano_n(evidence: Evidence, v: Verdict) -> None:
    for s, fields in _submissions(evidence):
        n = fields.get("n")
        if not _nano(fields) or n is None:
            continue
        try:
            count = int(n)
        except (TypeError, ValueError):
            continue
        if s.ok:
            (v.confirmed if count <= NANO_MAX_N else v.contradicted).append(
                f"{fields.get('model')} accepted n={count}"
                + ("" if count <= NANO_MAX_N else f" (raise nano_max_n to at least {count})")
            )
        elif s.status == 400 and _names(s, "n"):
            (v.confirmed if count > NANO_MAX_N else v.contradicted).append(
                f"{fields.get('model')} refused n={count}"
            )


def judge_nano_size(evidence: Evidence, v: Verdict) -> None:
    for s, fields in _submissions(evidence):
        size = fields.get("size")
        if not _nano(fields) or not isinstance(size, str):
            continue
        documented = parse_size(size) is not None or size.lower() in TIER_WORDS
        if s.ok:
            (v.confirmed if documented else v.contradicted).append(f"size {size!r} was accepted")
        elif s.status == 400 and _names(s, "size"):
            (v.contradicted if documented else v.confirmed).append(f"size {size!r} was refused")


def judge_quality(evidence: Evidence, v: Verdict) -> None:
    for s, fields in _submissions(evidence):
        quality = fields.get("quality")
        if fields.get("model") != "gpt-image-2" or not isinstance(quality, str):
            continue
        documented = quality.lower() in ("low", "medium", "high")
        if s.ok:
            (v.confirmed if documented else v.contradicted).append(f"quality {quality!r} accepted")
        elif s.status == 400 and _names(s, "quality"):
            (v.contradicted if documented else v.confirmed).append(f"quality {quality!r} refused")


def judge_response_format(evidence: Evidence, v: Verdict) -> None:
    for s, fields in _submissions(evidence):
        value = fields.get("response_format")
        if value is None:
            continue
        if s.ok:
            (v.confirmed if value == "url" else v.contradicted).append(
                f"response_format {value!r} accepted"
            )
        elif s.status == 400 and _names(s, "response_format"):
            (v.contradicted if value == "url" else v.confirmed).append(
                f"response_format {value!r} refused"
            )


def judge_blank_prompt(evidence: Evidence, v: Verdict) -> None:
    for s, fields in _submissions(evidence):
        prompt = fields.get("prompt")
        if not isinstance(prompt, str) or not is_blank(prompt):
            continue
        shown = "empty" if not prompt else f"of only white space ({_short(prompt)})"
        if s.ok:
            v.contradicted.append(f"a prompt {shown} was accepted")
        elif s.status == 400 and _names(s, "prompt"):
            v.confirmed.append(f"a prompt {shown} was refused naming prompt")


def judge_unknown_fields(evidence: Evidence, v: Verdict) -> None:
    for s, fields in _submissions(evidence):
        unknown = unknown_fields(fields)
        if not unknown:
            continue
        if s.ok:
            v.confirmed.append(f"{', '.join(map(repr, unknown[:3]))} ignored, the task accepted")
        elif s.status == 400 and any(_names(s, name) for name in unknown):
            v.contradicted.append(f"refused naming the unknown field(s) {unknown[:3]!r}")


def judge_statuses(evidence: Evidence, v: Verdict) -> None:
    for s in evidence.sent:
        status, kind = s.status, s.exchange.kind
        if status is None:
            continue
        if kind == "submit" and s.ok:
            if status in (200, 202):
                setting = "" if status == 200 else " (submit_status = 202)"
                v.confirmed.append(f"a submission was accepted with {status}{setting}")
            else:
                v.contradicted.append(f"a submission was accepted with {status}")
        elif status == 429:
            if "retry-after" in s.exchange.response_headers:
                v.confirmed.append("a 429 came with Retry-After")
            else:
                v.contradicted.append("a 429 came without Retry-After")
        elif status >= 500:
            v.contradicted.append(f"{s.operation} answered {status}")
        elif 400 <= status < 500 and status not in DOCUMENTED_STATUSES:
            v.contradicted.append(f"{s.operation} answered {status}, which D-9 does not list")
        elif status == 400 and code_of(s.data) not in DOCUMENTED_400_CODES:
            v.contradicted.append(f"a 400 with code {code_of(s.data)!r}")
        elif kind == "poll" and s.exchange.task_id not in evidence.tasks and status in (400, 404):
            code = code_of(s.data)
            if (status, code) == (404, "task_not_found"):
                v.confirmed.append("an unknown task is 404 task_not_found")
            elif (status, code) == (400, "task_not_exist"):
                v.confirmed.append(
                    "an unknown task is 400 task_not_exist (unknown_task_status = 400)"
                )
            else:
                v.contradicted.append(f"an unknown task is {status} {code!r}")


def judge_references(evidence: Evidence, v: Verdict) -> None:
    for s, fields in _submissions(evidence):
        urls = [fields.get("image"), *(fields.get("images") or [])]
        given = [u for u in urls if isinstance(u, str) and u.startswith(("http", "data:"))]
        if not given:
            continue
        kind = "a data: URL" if given[0].startswith("data:") else "an http(s) URL"
        if s.ok:
            v.confirmed.append(f"{kind} reference was accepted")
        elif s.status == 400 and (_names(s, "image") or _names(s, "images")):
            v.contradicted.append(f"{kind} reference was refused: {_short(message_of(s.data))}")


def judge_life_cycle(evidence: Evidence, v: Verdict) -> None:
    for s in evidence.sent:
        task = s.task
        if task is None or task.get("status") not in ("queued", "processing"):
            continue
        metadata: dict[str, Any] = (
            task["metadata"] if isinstance(task.get("metadata"), dict) else {}
        )
        count, progress = metadata.get("result_count"), str(task.get("progress"))
        status = task["status"]
        if count not in (0, None):
            v.contradicted.append(f"a {status} task has result_count {count}")
        elif status == "processing" and progress == "100%":
            v.contradicted.append("a processing task is at 100%")
        else:
            v.confirmed.append(f"{status} tasks have no result and progress below 100%")


JUDGES: dict[str, Judge] = {
    "D-1": judge_auth,
    "D-2": judge_envelope,
    "D-3": judge_result_urls,
    "D-4": judge_error,
    "D-5": judge_nano_n,
    "D-6": judge_nano_size,
    "D-7": judge_quality,
    "D-8": judge_response_format,
    "D-9": judge_statuses,
    "D-11": judge_references,
    "D-12": judge_blank_prompt,
    "D-13": judge_unknown_fields,
    "SPEC 2.6": judge_life_cycle,
}


def contract_assumptions(contract: Any) -> list[str]:
    """Every ``x-assumption`` value of the contract, in a stable order."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("x-assumption"), str):
                found.add(node["x-assumption"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(contract)
    return sorted(
        found, key=lambda n: (not n.startswith("D-"), int(n[2:]) if n[2:].isdigit() else 0, n)
    )


def judge(evidence: Evidence, names: list[str]) -> list[Verdict]:
    verdicts = []
    for name in names:
        verdict = Verdict(name)
        rule = JUDGES.get(name)
        if rule is not None:
            rule(evidence, verdict)
        verdicts.append(verdict)
    return verdicts


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


__all__ = [
    "CONFIRMS",
    "CONTRADICTS",
    "JUDGES",
    "UNTOUCHED",
    "Verdict",
    "contract_assumptions",
    "judge",
]
