"""conform's rules on their own, without a service: the life-cycle rules, the picture checks,
the near misses drawn from the catalogue, the task budget, the explanations and the report."""

from __future__ import annotations

import io
import threading
import tomllib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from PIL import Image

from emulator.conformance import ConformOptions, Report, Sample, TaskBudget
from emulator.conformance.budget import refused
from emulator.conformance.checks import (
    expected_task_type,
    result_problems,
    submission_problems,
    unwrap,
)
from emulator.conformance.explain import Explainer
from emulator.conformance.lifecycle import Seen, check_life
from emulator.conformance.near_misses import names_field, near_misses
from emulator.conformance.pictures import Expected, check_picture, sniff_format
from emulator.contract import load_contract
from emulator.core.catalogue import Catalogue

ROOT = Path(__file__).parent.parent


def _task(status: str, progress: str, **extra: Any) -> dict[str, Any]:
    metadata = {"task_type": "text2image", "result_count": 0, **extra.pop("metadata", {})}
    task = {
        "task_id": "task_1",
        "status": status,
        "progress": progress,
        "result_url": None,
        "metadata": metadata,
        "error": None,
    }
    task.update(extra)
    return task


SUBMITTED = Seen("wrapped", _task("queued", "0%"))
DONE = _task(
    "succeeded",
    "100%",
    result_url="https://cdn/1.png",
    metadata={"result_count": 1},
)


def _life(*polls: dict[str, Any], n: int = 1, envelope: str = "wrapped") -> list[tuple[str, str]]:
    seen = [Seen(envelope, task) for task in polls]
    return [(f.check, f.line) for f in check_life("task_1", SUBMITTED, seen, n=n, task_type=None)]


# -- the life cycle -------------------------------------------------------------------------------
def test_a_faithful_life_breaks_no_rule() -> None:
    assert _life(_task("processing", "33%"), _task("processing", "66%"), DONE, DONE) == []


def test_progress_going_back_is_named_with_both_values() -> None:
    found = _life(_task("processing", "60%"), _task("processing", "30%"), DONE)
    assert found == [
        ("progress_monotone", "progress went from 60% to 30% between two polls of task_1")
    ]


def test_status_going_back_is_named() -> None:
    found = dict(_life(_task("processing", "10%"), _task("queued", "10%"), DONE))
    assert (
        found["status_order"]
        == "status went from 'processing' back to 'queued' between two polls of task_1"
    )


def test_a_change_after_the_end_is_named_by_field() -> None:
    changed = {**DONE, "result_url": "https://cdn/other.png"}
    found = dict(_life(DONE, changed))
    assert (
        "task_1 changed after it ended 'succeeded': result_url went from" in found["terminal_final"]
    )


def test_a_result_url_signed_afresh_after_the_end_is_not_a_change() -> None:
    signed = {**DONE, "result_url": "https://cdn/1.png?expires=1&sig=a"}
    resigned = {**DONE, "result_url": "https://cdn/1.png?expires=2&sig=b"}
    assert _life(signed, resigned) == []
    moved = {**DONE, "result_url": "https://cdn/2.png?expires=2&sig=b"}
    assert [check for check, _ in _life(signed, moved)] == ["terminal_final"]


def test_a_poll_in_another_envelope_is_named() -> None:
    found = dict(_life(_task("processing", "50%"), DONE, envelope="bare"))
    assert "but a poll answered a bare task" in found["same_envelope"]


def test_fewer_results_than_asked_are_named() -> None:
    found = dict(_life(DONE, n=2))
    assert found["result_count_matches_n"] == (
        "task_1 asked for n=2 picture(s) and succeeded with result_count 1"
    )


def test_a_task_type_other_than_the_request_makes_is_named() -> None:
    seen = [Seen("wrapped", DONE)]
    found = check_life("task_1", SUBMITTED, seen, n=1, task_type="image2image")
    assert [f.check for f in found] == ["task_type_inferred"]


@pytest.mark.parametrize(
    ("body", "uploaded", "expected"),
    [
        ({"prompt": "x"}, False, "text2image"),
        ({"prompt": "x", "image": "https://a/b.png"}, False, "image2image"),
        ({"prompt": "x", "images": ["https://a/b.png"]}, False, "image2image"),
        ({"prompt": "x"}, True, "image2image"),
        (
            {"prompt": "x", "image": "https://a/b.png", "task_type": "text2image"},
            False,
            "text2image",
        ),
        ({"prompt": "x", "task_type": None, "image": None}, False, "text2image"),
        ({"prompt": "x", "task_type": "video"}, False, None),
    ],
)
def test_task_type_inference_follows_the_document(
    body: dict[str, Any], uploaded: bool, expected: str | None
) -> None:
    assert expected_task_type(body, uploaded) == expected


def test_a_submission_answer_must_be_a_new_task() -> None:
    assert submission_problems(_task("queued", "0%")) == []
    problems = submission_problems(_task("processing", "5%", result_url="https://cdn/1.png"))
    assert len(problems) == 2 and "status 'processing' at progress '5%'" in problems[0]


def test_result_count_and_urls_must_agree() -> None:
    assert result_problems(_task("succeeded", "100%", metadata={"result_count": 1})) == []
    urls = ["https://cdn/1.png", "https://cdn/2.png"]
    listed = {"result_count": 3, "result_urls": urls}
    problem = result_problems(_task("succeeded", "100%", result_url=urls[1], metadata=listed))
    assert problem == [
        "result_count is 3 but result_urls lists 2 URL(s)",
        "result_url 'https://cdn/2.png' is not the first of result_urls ('https://cdn/1.png')",
    ]


def test_both_envelopes_unwrap_and_anything_else_does_not() -> None:
    task = _task("queued", "0%")
    assert unwrap({"code": "success", "message": "", "data": task}) == ("wrapped", task)
    assert unwrap(task) == ("bare", task)
    assert unwrap({"code": "success", "data": None}) is None
    assert unwrap([task]) is None


# -- pictures -------------------------------------------------------------------------------------
def _picture(fmt: str, size: tuple[int, int] = (8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(out, fmt.upper())
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_picture_formats_are_told_by_their_magic_bytes(fmt: str) -> None:
    assert sniff_format(_picture(fmt)) == fmt


def test_a_right_picture_passes_every_check() -> None:
    results = check_picture("p", 200, "image/webp", _picture("webp"), Expected("webp", 8, 6))
    assert [problem for _, problem in results] == [None] * 4


def test_each_picture_problem_is_named() -> None:
    results = dict(
        check_picture("p", 200, "image/png", _picture("jpeg", (4, 4)), Expected("png", 8, 6))
    )
    assert results["result_picture_format"] == "p is jpeg but output_format asked png"
    assert results["result_picture_size"] == "p is 4x4 pixels; the catalogue says 8x6"
    assert results["result_picture_content_type"] is None
    assert check_picture("p", 404, "", b"", Expected("png", 8, 6)) == [
        ("result_picture_served", "p answered 404, not the picture")
    ]


def test_a_picture_cut_short_is_named() -> None:
    data = _picture("png", (64, 64))
    results = dict(check_picture("p", 200, "image/png", data[:60], Expected("png", 64, 64)))
    assert str(results["result_picture_format"]).startswith("p does not decode: ")


# -- near misses ----------------------------------------------------------------------------------
def test_near_misses_break_each_documented_rule_once() -> None:
    catalogue = Catalogue.load()
    misses = near_misses(catalogue, ConformOptions())
    fields = [m.field for m in misses]
    for field in ("size", "aspect_ratio", "output_format", "n", "prompt", "model", "image"):
        assert field in fields, field
    for miss in misses:
        if miss.status != 400 or miss.body.get("model") not in catalogue.models:
            continue
        # Every near miss is one rule away from a request the catalogue accepts.
        assert miss.field in miss.body or miss.field in ("size", "prompt", "image"), miss
    sizes = [m.body["size"] for m in misses if m.field == "size" and "size" in m.body]
    assert sizes and all(size not in catalogue.gpt_sizes for size in sizes)
    # The careful list submits only the two models the document says are enabled.
    assert {m.body["model"] for m in misses if m.body["model"] in catalogue.models} == {
        "NanoBanana2-0.5K",
        "gpt-image-2",
    }


@pytest.mark.parametrize(
    ("message", "field", "named"),
    [
        ("n must be between 1 and 8 for gpt-image-2, got 9", "n", True),
        ("Invalid value for 'n': must be at most 8", "n", True),
        ("`n` is out of range", "n", True),
        ("body.n: too large", "n", True),
        ("参数n超出范围", "n", True),
        ("invalid value for size", "n", False),
        ("images[0] must be an http(s) URL", "images", True),
        ("images[0] must be an http(s) URL", "image", False),
        ("task_type image2image needs a reference picture in image or images", "image", True),
        ("task_type image2image needs a picture", "image", False),
        ("output_format 'webp' is not supported", "output_format", True),
        ("format 'webp' is not supported", "output_format", False),
    ],
)
def test_a_refusal_names_a_field_only_as_a_word_of_its_own(
    message: str, field: str, named: bool
) -> None:
    assert names_field(message, field) is named


def test_the_full_list_adds_every_model_and_the_guesses() -> None:
    careful = near_misses(Catalogue.load(), ConformOptions())
    full = near_misses(Catalogue.load(), ConformOptions.full())
    added = [m for m in full if m not in careful]
    assert {m.body["model"] for m in added if m.field == "output_format"} >= {"NanoBananaPro-8K"}
    assert {m.field for m in added} >= {"n", "response_format"}


# -- the budget ----------------------------------------------------------------------------------
def test_the_budget_never_lets_more_than_its_limit_through_from_many_threads() -> None:
    budget = TaskBudget(5)
    taken: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            ok = budget.take()
            with lock:
                taken.append(ok)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken.count(True) == 5 and budget.spent == 5 and budget.left == 0


def test_a_refused_submission_is_given_back_and_an_uncertain_one_is_not() -> None:
    budget = TaskBudget(1)
    assert budget.take()
    budget.give_back()  # answered 400
    assert budget.take() and not budget.take()
    assert refused(400) and refused(429) and not refused(500) and not refused(200)
    assert TaskBudget(0).left is None
    with pytest.raises(ValueError, match="max_tasks must be >= 0"):
        TaskBudget(-1)


# -- explanations and the report ------------------------------------------------------------------
def test_a_schema_failure_is_explained_on_the_branch_the_body_meant() -> None:
    explain = Explainer(load_contract())
    task = _task("succeeded", "100%", result_url="/relative.png", metadata={"result_count": 1})
    body = '{"code": "success", "message": "", "data": ' + __import__("json").dumps(task) + "}"
    line = explain.explain("GET /v1/images/tasks/{task_id}", 200, body.encode())
    assert line == 'as TaskEnvelope: data/result_url: "/relative.png" is not a "uri"'


def test_the_junit_report_has_a_case_per_check_and_operation() -> None:
    report = Report(target="t")
    report.passed("progress_monotone", "GET x")
    report.add("response_schema_conformance", "GET x", Sample(line="bad\nbody", detail="more"))
    report.cannot_check("key_isolation", "GET x", "needs a second key")
    report.error("a phase broke")
    suite = ElementTree.fromstring(report.junit())
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert set(cases) == {
        ("progress_monotone", "GET x"),
        ("response_schema_conformance", "GET x"),
        ("key_isolation", "GET x"),
        ("error", "error-0"),
    }
    failure = cases[("response_schema_conformance", "GET x")].find("failure")
    assert failure is not None and failure.get("message") == "bad body"
    assert cases[("key_isolation", "GET x")].find("skipped") is not None
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == (
        "4",
        "1",
        "1",
        "1",
    )


def test_a_run_that_could_not_happen_is_never_a_pass() -> None:
    report = Report(target="t")
    report.passed("auth_required", "GET x")
    report.could_not_run = "authentication failed"
    assert report.exit_code == 2 and not report.ok
    assert report.headline() == "could not run: authentication failed"
    suite = ElementTree.fromstring(report.junit())
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert cases[("conform", "run")].find("error") is not None and suite.get("errors") == "1"


# -- packaging ------------------------------------------------------------------------------------
def test_every_subpackage_is_packaged_and_conform_has_an_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    packaged = set(project["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "emulator").rglob("__init__.py")
    }
    assert on_disk <= packaged
    extra = project["project"]["optional-dependencies"]["conform"]
    assert any(req.startswith("schemathesis") for req in extra)
    assert any(req.startswith("junitparser") for req in extra)  # the junit.xml report


# -- conform's schemathesis checks stay in conform's runs ------------------------------------
@pytest.mark.parametrize("marked", [True, False])
def test_the_custom_checks_act_only_on_conform_schemas(marked: bool) -> None:
    import json

    import httpx
    import schemathesis
    from schemathesis.errors import FailureGroup

    from emulator.conformance.checks import MARKER, submission_is_queued

    contract = load_contract()
    if marked:
        contract[MARKER] = True
    schema = schemathesis.openapi.from_dict(contract)
    case = schema["/v1/images/tasks"]["POST"].Case(
        body={"model": "NanoBanana2-0.5K", "prompt": "x"}, media_type="application/json"
    )
    answer = {"code": "success", "message": "", "data": _task("processing", "5%")}
    request = httpx.Request("POST", "http://127.0.0.1/v1/images/tasks", json=case.body)
    response = httpx.Response(200, json=answer, request=request)
    response.elapsed = __import__("datetime").timedelta(seconds=0.01)
    if marked:
        with pytest.raises(FailureGroup) as failed:
            case.validate_response(response, checks=[submission_is_queued])
        assert "the submission answered status 'processing'" in str(failed.value)
    else:
        # Another run's schema: the check stays silent.
        case.validate_response(response, checks=[submission_is_queued])
    assert json.loads(response.content)["data"]["status"] == "processing"
