"""The deviating services of tests/drifts.py that drift in what the service answers: the life
cycle seen across polls, the result pictures, and single answers off the schema. Most change
the answers (tests/drift_answers.py); a few reach the same drift by reading the request
differently (tests/drift_requests.py: an explicit task_type ignored, a format or size
defaulted), and are here because conform sees them in the answers.
"""

from __future__ import annotations

from . import drift_answers as answers
from . import drift_requests as requests
from .drift_types import LIFE, PICTURES, SCHEMA, Drift

#: The life cycle seen across polls.
LIFE_DRIFTS: tuple[Drift, ...] = (
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
)

#: The result pictures.
PICTURE_DRIFTS: tuple[Drift, ...] = (
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
)

#: One answer off the schema.
SCHEMA_DRIFTS: tuple[Drift, ...] = (
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
