"""The deviating services of tests/drifts.py that drift in how the service reads requests:
near misses accepted, refusals (their status, bodies and headers), keys and latency; each
built in tests/drift_requests.py.
"""

from __future__ import annotations

from . import drift_requests as requests
from .conform_support import SECOND_KEY
from .drift_types import ERRORS, KEYS, NEAR, POLL, SUBMIT, Drift

#: Near-miss requests accepted.
NEAR_DRIFTS: tuple[Drift, ...] = (
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
)

#: Refusals: their status, bodies and headers.
ERROR_DRIFTS: tuple[Drift, ...] = (
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
)

#: Keys and latency.
KEY_DRIFTS: tuple[Drift, ...] = (
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
)
