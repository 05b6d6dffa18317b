"""Services that each deviate from the documented API in one plausible way, and what conform must
say about each: the check that names it and a fragment of its one-line description.

Every drift is the real emulator behind one change (tests/conform_support.py; the changes are
in tests/drift_answers.py and tests/drift_requests.py). They cover every cause of the conform
issue: the life cycle seen across polls, result pictures, near-miss requests, error bodies and
headers, keys and latency, and single-answer schema drift.
`tests/test_conform_drift.py` runs each in the careful profile (in `make test`),
`tests/drift_full.py` in ``--full`` (`make contract-drift`). `BLIND` are services conform
cannot judge (tests/drift_blind.py): each must end in an error or "could not run", saying why,
with no deviation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp

from . import drift_answers as answers
from . import drift_blind as blind
from . import drift_requests as requests
from .conform_support import SECOND_KEY


@dataclass(frozen=True, slots=True)
class Drift:
    name: str
    #: Which cause of the conform issue it stands for.
    cause: str
    #: A fresh deviating app (state of a deviation, e.g. polls counted, is per app).
    build: Callable[[], ASGIApp]
    #: The check that must report it, and a fragment of the one-line description.
    check: str
    text: str
    #: Extra conform flags the deviation needs to be visible.
    args: tuple[str, ...] = ()


LIFE = "life cycle across answers"
PICTURES = "result pictures"
NEAR = "near misses"
ERRORS = "error bodies and headers"
KEYS = "keys and latency"
SCHEMA = "one answer off the schema"
POLL = "GET /v1/images/tasks/{task_id}"
SUBMIT = "POST /v1/images/tasks"

DRIFTS: tuple[Drift, ...] = (
    Drift(
        "progress_goes_back",
        LIFE,
        answers.progress_goes_back,
        "progress_monotone",
        "progress went from 60% to 30% between two polls of task_",
    ),
    Drift(
        "status_goes_back",
        LIFE,
        answers.status_goes_back,
        "status_order",
        "status went from 'processing' back to 'queued'",
    ),
    Drift(
        "terminal_not_final",
        LIFE,
        answers.terminal_not_final,
        "terminal_final",
        "changed after it ended 'succeeded': status went from 'succeeded' to 'processing'",
    ),
    Drift(
        "terminal_forgotten_later",
        LIFE,
        answers.terminal_forgotten_later,
        "terminal_final",
        "changed after it ended 'succeeded': status went from 'succeeded' to 'processing'",
    ),
    Drift(
        "submission_not_queued",
        LIFE,
        answers.submission_not_queued,
        "submission_is_queued",
        "the submission answered status 'processing' at progress '5%'",
    ),
    Drift(
        "polls_answer_bare",
        LIFE,
        answers.polls_answer_bare,
        "same_envelope",
        "but a poll answered a bare task",
    ),
    Drift(
        "fewer_pictures_than_asked",
        LIFE,
        answers.fewer_pictures_than_asked,
        "result_count_matches_n",
        "asked for n=2 picture(s) and succeeded with result_count 1",
    ),
    Drift(
        "result_urls_disagree",
        LIFE,
        answers.result_urls_disagree,
        "result_count_consistent",
        "result_count is 2 but result_urls lists 3 URL(s)",
    ),
    Drift(
        "result_url_not_first",
        LIFE,
        answers.result_url_not_first,
        "result_count_consistent",
        "is not the first of result_urls",
    ),
    Drift(
        "task_type_not_inferred",
        LIFE,
        answers.task_type_not_inferred,
        "task_type_inferred",
        "task_type is 'text2image' but the submission asks for 'image2image'",
    ),
    # The 4th scenario: beyond the careful profile's default budget of 3 tasks.
    Drift(
        "explicit_task_type_ignored",
        LIFE,
        requests.lenient(requests.explicit_task_type_ignored),
        "task_type_inferred",
        "the submission asks for 'text2image' (explicit task_type",
        args=("--max-tasks", "4"),
    ),
    Drift(
        "processing_at_100",
        LIFE,
        answers.processing_at_100,
        "response_schema_conformance",
        'data/progress: "100%" does not match',
    ),
    Drift(
        "succeeded_without_results",
        LIFE,
        answers.succeeded_without_results,
        "response_schema_conformance",
        "0 is less than the minimum of 1",
    ),
    Drift(
        "poll_answers_another_id",
        LIFE,
        answers.poll_answers_another_id,
        "task_id_stable",
        "answered task_id 'task_",
    ),
    Drift(
        "new_task_not_found_at_first",
        LIFE,
        answers.new_task_not_found_at_first,
        "task_pollable",
        "right after it was created answered 404",
    ),
    Drift(
        "task_never_finishes",
        LIFE,
        answers.task_never_finishes,
        "task_finishes",
        "was still 'processing' at 99%",
        args=("--poll-deadline", "0.3", "--poll-interval", "0.02"),
    ),
    Drift(
        "pictures_wrong_size",
        PICTURES,
        answers.pictures_wrong_size,
        "result_picture_size",
        "is 64x64 pixels; the catalogue says",
    ),
    Drift(
        "pictures_always_png",
        PICTURES,
        answers.pictures_always_png,
        "result_picture_format",
        "is png but output_format asked",
    ),
    Drift(
        "pictures_unlabelled",
        PICTURES,
        answers.pictures_unlabelled,
        "result_picture_content_type",
        "is served as 'application/octet-stream'",
    ),
    Drift(
        "pictures_gone",
        PICTURES,
        answers.pictures_gone,
        "result_picture_served",
        "answered 404, not the picture",
    ),
    Drift(
        "relative_result_urls",
        PICTURES,
        answers.relative_result_urls,
        "response_schema_conformance",
        'is not a "uri"',
    ),
    Drift(
        "pictures_cut_short",
        PICTURES,
        answers.pictures_cut_short,
        "result_picture_format",
        "does not decode",
    ),
    Drift(
        "jpeg_by_default",
        PICTURES,
        requests.lenient(requests.jpeg_by_default),
        "result_picture_format",
        "is jpeg but output_format asked png",
    ),
    Drift(
        "wide_by_default",
        PICTURES,
        requests.lenient(requests.wide_by_default),
        "result_picture_size",
        "is 688x384 pixels; the catalogue says 512x512",
    ),
    Drift(
        "accepts_any_gpt_size",
        NEAR,
        requests.lenient(requests.any_gpt_size),
        "near_miss_refused",
        "accepted size '832x1248' is not one of gpt-image-2's 48 sizes",
    ),
    Drift(
        "gpt_ignores_aspect_ratio",
        NEAR,
        requests.lenient(requests.gpt_ignores_aspect_ratio),
        "near_miss_refused",
        "accepted aspect_ratio with gpt-image-2",
    ),
    Drift(
        "webp_for_every_model",
        NEAR,
        requests.lenient(requests.webp_for_every_model),
        "near_miss_refused",
        "accepted output_format 'webp' with NanoBanana2-0.5K",
    ),
    Drift(
        "blank_prompt_accepted",
        NEAR,
        requests.lenient(requests.blank_prompt_accepted),
        "near_miss_refused",
        "accepted a prompt of only white space (D-12)",
    ),
    Drift(
        "nano_size_word_accepted",
        NEAR,
        requests.lenient(requests.any_nano_size_word),
        "near_miss_refused",
        "accepted size '3K' for NanoBanana",
    ),
    Drift(
        "n_clamped_not_refused",
        NEAR,
        requests.lenient(requests.n_clamped),
        "near_miss_refused",
        "accepted n=9 for gpt-image-2",
    ),
    Drift(
        "gpt_size_defaulted",
        NEAR,
        requests.lenient(requests.default_size),
        "near_miss_refused",
        "accepted gpt-image-2 without size",
    ),
    Drift(
        "image2image_without_picture",
        NEAR,
        requests.lenient(requests.image2image_without_picture),
        "near_miss_refused",
        "accepted task_type image2image without image or images",
    ),
    Drift(
        "submissions_without_key",
        NEAR,
        requests.submissions_without_key,
        "near_miss_refused",
        "accepted a submission without a key",
    ),
    Drift(
        "submissions_take_any_key",
        NEAR,
        requests.submissions_take_any_key,
        "near_miss_refused",
        "accepted a submission with a made-up key",
    ),
    Drift(
        "images_ignored",
        NEAR,
        requests.lenient(requests.images_ignored),
        "near_miss_refused",
        "accepted images ['not-a-url']",
    ),
    Drift(
        "multipart_unsupported",
        NEAR,
        requests.multipart_unsupported,
        "near_miss_refused",
        "refused a multipart submission with a picture and no prompt with 415, not 400",
    ),
    Drift(
        "any_content_type_read_as_json",
        NEAR,
        requests.any_content_type_read_as_json,
        "near_miss_refused",
        "accepted a JSON body sent as text/plain",
    ),
    Drift(
        "vague_refusals",
        ERRORS,
        requests.refusals(requests.vague),
        "refusal_names_field",
        "does not name 'output_format': 'invalid request'",
    ),
    Drift(
        "n_refusal_names_another_field",
        ERRORS,
        requests.refusals(requests.n_named_nowhere),
        "refusal_names_field",
        "does not name 'n': 'invalid value for size'",
    ),
    Drift(
        "refusals_are_422",
        ERRORS,
        requests.refusals(lambda a: (422, a[1], a[2])),
        "near_miss_refused",
        "with 422, not 400",
    ),
    Drift(
        "refusals_without_envelope",
        ERRORS,
        requests.refusals(lambda a: (400, a[1], b'{"error": "bad request"}')),
        "response_schema_conformance",
        f"{SUBMIT} answered 400",
    ),
    Drift(
        "server_error_on_bad_input",
        ERRORS,
        requests.refusals(requests.server_error),
        "not_a_server_error",
        f"{SUBMIT} answered 500",
    ),
    Drift(
        "relay_style_401",
        ERRORS,
        requests.relay_style_401,
        "response_schema_conformance",
        '"error" is a required property',
    ),
    Drift(
        "polls_without_key_allowed",
        ERRORS,
        requests.polls_without_key_allowed,
        "auth_required",
        f"{POLL} without a key answered 404, not 401",
    ),
    Drift(
        "rate_limit_without_retry_after",
        ERRORS,
        requests.rate_limit_without_retry_after,
        "response_headers_conformance",
        "Retry-After",
    ),
    Drift(
        "tasks_shared_between_keys",
        KEYS,
        requests.tasks_shared_between_keys,
        "key_isolation",
        "a second key can read task_",
        args=("--second-api-key", SECOND_KEY),
    ),
    Drift(
        "slow_submissions",
        KEYS,
        requests.slow_submissions,
        "max_response_time",
        f"{SUBMIT} answered 200: Response time limit exceeded",
        args=("--max-response-time", "0.3"),
    ),
    Drift(
        "status_vocabulary",
        SCHEMA,
        answers.schema_edit(lambda t: t.update(status="pending")),
        "response_schema_conformance",
        '"pending" is not one of',
    ),
    Drift(
        "progress_as_number",
        SCHEMA,
        answers.schema_edit(lambda t: t.update(progress=0)),
        "response_schema_conformance",
        '0 is not of type "string"',
    ),
    Drift(
        "metadata_missing",
        SCHEMA,
        answers.schema_edit(lambda t: t.pop("metadata")),
        "response_schema_conformance",
        '"metadata" is a required property',
    ),
    Drift(
        "renamed_envelope",
        SCHEMA,
        answers.renamed_envelope,
        "response_schema_conformance",
        '"data" is a required property',
    ),
)


@dataclass(frozen=True, slots=True)
class Blind:
    """A service conform cannot judge (tests/drift_blind.py): what it must say instead."""

    name: str
    build: Callable[[], ASGIApp]
    #: The exit code: 1 (could not check something, an error) or 2 (could not run).
    exit: int
    #: A fragment of the error or of the could-not-run reason.
    text: str
    args: tuple[str, ...] = ()


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
