"""Services that each deviate from the documented API in one plausible way, and what conform must
say about each: the check that names it and a fragment of its one-line description.

Every drift is the real emulator behind one change (tests/conform_support.py; the changes are
in tests/drift_answers.py and tests/drift_requests.py). They cover every cause of the conform
issue: the life cycle seen across polls, result pictures, near-miss requests, error bodies and
headers, keys and latency, and single-answer schema drift. They are listed by what they drift
on: the service's answers (tests/drifts_in_answers.py) or how it reads requests
(tests/drifts_in_requests.py); `DRIFTS` here is all of them, in that order of causes
(`Drift`, `Blind`: tests/drift_types.py).
`tests/test_conform_drift.py` runs each in the careful profile (in `make test`),
`tests/drift_full.py` in ``--full`` (`make contract-drift`). `BLIND` are services conform
cannot judge (tests/drift_blind.py): each must end in an error or "could not run", saying why,
with no deviation.
"""

from __future__ import annotations

from . import drift_blind as blind
from .drift_types import Blind, Drift
from .drifts_in_answers import LIFE_DRIFTS, PICTURE_DRIFTS, SCHEMA_DRIFTS
from .drifts_in_requests import ERROR_DRIFTS, KEY_DRIFTS, NEAR_DRIFTS

#: Every deviating service, cause by cause.
DRIFTS: tuple[Drift, ...] = (
    *LIFE_DRIFTS,
    *PICTURE_DRIFTS,
    *NEAR_DRIFTS,
    *ERROR_DRIFTS,
    *KEY_DRIFTS,
    *SCHEMA_DRIFTS,
)

BLIND: tuple[Blind, ...] = (
    Blind(
        "rate_limited_after_preflight",
        blind.rate_limited_after_preflight,
        1,
        "could not check auth_required @ GET /v1/images/tasks/{task_id}: a poll without a key "
        "answered 429 (rate limited)",
        args=("--phases", "examples"),
    ),
    Blind(
        "quota_spent_for_schemathesis",
        blind.quota_spent_for_schemathesis,
        1,
        "phase could not check ",
    ),
    Blind(
        "submissions_refused_for_schemathesis",
        blind.submissions_refused_for_schemathesis,
        1,
        "phase could not check POST /v1/images/tasks: ",
        args=("--max-tasks", "20"),  # budget left for schemathesis' submissions
    ),
    Blind("no_credit", blind.no_credit, 2, "could not run: the key has no credit: POST"),
    Blind(
        "every_task_fails",
        blind.every_task_fails,
        1,
        "result_picture_size @ GET result_url: scenario nano-text2image (a 16:9 JPEG picture, "
        "task_type inferred text2image): its task task_",
    ),
    Blind(
        "gpt_tasks_fail",
        blind.gpt_tasks_fail,
        1,
        "scenario gpt-image-2-n2 (n=2: result_count 2 and two WebP pictures): its task task_",
    ),
    Blind(
        "gateway_answers_every_path_alike",
        blind.gateway_answers_every_path_alike,
        2,
        "the task routes are not there; is the base URL the root of the API",
    ),
)

__all__ = ["BLIND", "DRIFTS", "Blind", "Drift"]
