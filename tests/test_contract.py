"""The OpenAPI contracts: valid, self-consistent, equal to the catalogue, served, and obeyed.

The two conformance tests run schemathesis in-process (examples, coverage, fuzzing and stateful
phases, every check, positive and negative data, a fixed seed) against a fresh emulator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from emulator import Settings, create_app
from emulator.conform import CHEAPEST_MODEL, ConformOptions, restrict_to_model, run_contract
from emulator.contract import contract_path, load_contract
from emulator.core.catalogue import Catalogue
from emulator.core.checks import WHITE_SPACE

FIXTURES = Path(__file__).parent.parent / "fixtures" / "requests"
KEY = "sk-contract"
SECOND_KEY = "sk-contract-2"
SEED = 20261125
#: Examples per operation in the in-process runs: enough to exercise every branch of the
#: request schemas, small enough to keep each run to a few seconds on two cores.
EXAMPLES = 30
NAMES = ("image-tasks", "emulator")


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = load_contract()["components"]["schemas"]
    return schemas


def _enum(schema: dict[str, Any]) -> list[Any]:
    return [v for v in schema["enum"] if v is not None]


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.lstrip("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# -- validity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_contract_is_valid_openapi_3_1(name: Any) -> None:
    document = load_contract(name)
    assert document["openapi"].startswith("3.1")
    validate(document)


@pytest.mark.parametrize("name", NAMES)
def test_every_ref_resolves(name: Any) -> None:
    document = load_contract(name)
    refs = [node["$ref"] for node in _walk(document) if isinstance(node.get("$ref"), str)]
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), f"external $ref {ref}"
        assert _resolve(document, ref) is not None, ref


def test_every_link_names_an_operation_and_its_parameters() -> None:
    document = load_contract()
    operations = {
        op["operationId"]: op
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    links = [
        (status, name, link)
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for status, response in op.get("responses", {}).items()
        for name, link in response.get("links", {}).items()
    ]
    assert {(status, name) for status, name, _ in links} >= {
        ("200", "GetTaskWrapped"),
        ("200", "GetTaskBare"),
    }
    for _, _, link in links:
        target = operations[link["operationId"]]
        declared = {p["name"] for p in target.get("parameters", [])}
        assert set(link["parameters"]) <= declared
        for expression in link["parameters"].values():
            assert re.fullmatch(r"\$response\.body#(/[a-z_]+)+", expression), expression


def test_the_two_envelope_shapes_have_distinct_required_members() -> None:
    schemas = _schemas()
    wrapped = set(schemas["TaskEnvelope"]["required"])
    bare = set(schemas["Task"]["required"])
    assert wrapped.isdisjoint(bare)
    refs = [b["$ref"].rsplit("/", 1)[-1] for b in schemas["TaskResponse"]["oneOf"]]
    assert refs == ["TaskEnvelope", "Task"]


def test_real_contract_describes_only_the_real_routes() -> None:
    document = load_contract()
    assert sorted(document["paths"]) == ["/v1/images/tasks", "/v1/images/tasks/{task_id}"]
    operation_ids = {
        op["operationId"] for item in document["paths"].values() for op in item.values()
    }
    assert operation_ids == {"submitImageTask", "getImageTask"}
    post = document["paths"]["/v1/images/tasks"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    statuses = set(post["responses"]) | set(
        document["paths"]["/v1/images/tasks/{task_id}"]["get"]["responses"]
    )
    assert statuses >= {"200", "400", "401", "403", "404", "413", "415", "429"}
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_the_401_body_is_the_openai_style_error_of_d1() -> None:
    document = load_contract()
    response = document["components"]["responses"]["Unauthorized"]
    assert response["x-assumption"] == "D-1"
    schema = response["content"]["application/json"]["schema"]
    assert _resolve(document, schema["$ref"])["properties"]["error"]["required"] == [
        "message",
        "type",
        "code",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_assumptions_name_a_spec_decision(name: Any) -> None:
    marked = [n["x-assumption"] for n in _walk(load_contract(name)) if "x-assumption" in n]
    assert all(re.fullmatch(r"D-(?:[1-9]|1[0-4])|SPEC 2\.6", m) for m in marked), marked
    if name == "image-tasks":
        assert {"D-1", "D-2", "D-3", "D-4", "D-5", "D-6", "D-7", "D-8", "D-9"} <= set(marked)


def test_known_false_positives_are_narrow_and_explained() -> None:
    import tomllib

    from emulator.contract import contracts_dir

    entries = tomllib.loads((contracts_dir() / "false-positives.toml").read_text("utf-8"))
    operations = {
        op["operationId"]: op
        for name in NAMES
        for item in load_contract(name)["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op  # not a path's shared parameters
    }
    for entry in entries["false-positive"]:
        assert set(entry) == {"check", "operation-id", "media-type", "message", "reason"}
        content = operations[entry["operation-id"]]["requestBody"]["content"]
        assert entry["media-type"] in content
        assert entry["message"] and len(entry["reason"]) > 80


# -- consistency with the catalogue and the reference document ---------------------------------
def test_enumerations_equal_the_catalogue() -> None:
    catalogue = Catalogue.load()
    schemas = _schemas()
    branches = [schemas[b["$ref"].rsplit("/", 1)[-1]] for b in schemas["SubmitRequest"]["oneOf"]]
    models = [m for branch in branches for m in _enum(branch["properties"]["model"])]
    assert sorted(models) == sorted(catalogue.model_names)
    for branch in branches:
        formats = tuple(_enum(branch["properties"]["output_format"]))
        for model in _enum(branch["properties"]["model"]):
            assert formats == catalogue.models[model].output_formats, model
    assert tuple(_enum(schemas["GptSize"])) == tuple(catalogue.gpt_sizes)
    assert tuple(_enum(schemas["AspectRatio"])) == catalogue.aspect_ratios
    assert tuple(_enum(schemas["GptQuality"])) == catalogue.families["gpt"].qualities
    assert schemas["GptImage2Request"]["properties"]["n"]["maximum"] == (
        catalogue.families["gpt"].max_n
    )
    assert schemas["NanoN"]["maximum"] == catalogue.families["nano"].max_n
    # The multipart form documents a subset of the same enumerations.
    form = schemas["SubmitForm"]["properties"]
    assert set(_enum(form["model"])) <= set(catalogue.model_names)
    assert tuple(_enum(form["aspect_ratio"])) == catalogue.aspect_ratios
    for model in _enum(form["model"]):
        assert set(_enum(form["output_format"])) <= set(catalogue.models[model].output_formats)


def test_the_emulator_contract_s_model_lists_are_the_catalogue_s() -> None:
    # A fault rule's match.model, and the model filters: any other model is refused.
    names = set(Catalogue.load().model_names)
    contract = load_contract("emulator")
    rule = contract["components"]["schemas"]["FaultRule"]["properties"]["match"]
    assert set(_enum(rule["properties"]["model"])) == names
    for path in ("/_emulator/tasks", "/_emulator/usage"):
        (model,) = [p for p in contract["paths"][path]["parameters"] if p.get("name") == "model"]
        assert set(model["schema"]["enum"]) == names, path


def test_nano_size_pattern_accepts_exactly_wxh_and_the_catalogue_s_size_words() -> None:
    rules = Catalogue.load().families["nano"]
    pattern = re.compile(_schemas()["NanoSize"]["pattern"])
    for word in rules.size_words:
        for spelling in (word, word.lower(), word.upper(), word.title()):
            assert pattern.search(spelling), spelling
            assert rules.is_size_word(spelling), spelling
    for other in ["1920x1080", "1x1"]:
        assert pattern.search(other) and not rules.is_size_word(other)
    for bad in ["3K", "16K", "0.5", "1K ", "auto1", "1\u212a", "0x5", "large"]:
        assert not pattern.search(bad) and not rules.is_size_word(bad), bad


def test_prompt_pattern_refuses_exactly_the_blank_prompts() -> None:
    pattern = re.compile(_schemas()["Prompt"]["pattern"])
    for char in WHITE_SPACE:
        assert not pattern.search(char * 3), hex(ord(char))
    for text in ["a", "\u3000猫", "\u200b", "\ufeff", "\x1c"]:
        assert pattern.search(text), text


def test_reference_samples_are_the_json_examples() -> None:
    post = load_contract()["paths"]["/v1/images/tasks"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    samples = [json.loads(p.read_text("utf-8")) for p in sorted(FIXTURES.glob("*.json"))]
    assert len(samples) == 4
    values = [example["value"] for example in examples.values()]
    assert sorted(values, key=json.dumps) == sorted(samples, key=json.dumps)


# -- served ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/openapi.yaml", "image-tasks"),
        ("/openapi.json", "image-tasks"),
        ("/_emulator/openapi.yaml", "emulator"),
        ("/_emulator/openapi.json", "emulator"),
    ],
)
def test_emulator_serves_its_contracts_without_a_key(path: str, name: Any) -> None:
    with TestClient(create_app(Settings(seed=1))) as client:
        response = client.get(path)
    assert response.status_code == 200
    if path.endswith(".json"):
        assert response.headers["content-type"] == "application/json"
        assert response.json() == load_contract(name)
    else:
        assert response.headers["content-type"].startswith("application/yaml")
        assert response.text == contract_path(name).read_text("utf-8")
        assert yaml.safe_load(response.text) == load_contract(name)


# -- obeyed: schemathesis in-process -------------------------------------------------------------
@pytest.mark.parametrize(
    ("envelope", "submit_status", "examples"),
    # The defaults get the big run; the other branch of D-2 and D-9 (bare task, 202) a small one
    # that still follows the links declared under 202 with the bare task's expression.
    [("wrapped", 200, EXAMPLES), ("bare", 202, 10)],
)
def test_emulator_conforms_to_the_real_api_contract(
    envelope: Any, submit_status: Any, examples: int
) -> None:
    # The per_poll clock: the scenarios' tasks end after three polls, and nothing waits.
    settings = Settings(
        seed=1,
        api_keys=(KEY, SECOND_KEY),
        envelope=envelope,
        submit_status=submit_status,
        clock="per_poll",
    )
    app = create_app(settings)
    options = ConformOptions.full(
        app=app,
        api_key=KEY,
        second_api_key=SECOND_KEY,
        seed=SEED,
        max_examples=examples,
        poll_interval=0,
    )
    report = run_contract(options)
    assert report.ok, report.summary()
    # Stateful links were followed: only a link yields a poll of a task that exists.
    polls = report.phase_statuses[("stateful", "GET /v1/images/tasks/{task_id}", 200)]
    assert polls > 0, report.phase_statuses
    assert report.statuses[("POST /v1/images/tasks", 400)] > 0  # negative data was sent
    assert report.statuses[("POST /v1/images/tasks", 401)] > 0  # and bad keys


def test_emulator_conforms_to_its_own_contract() -> None:
    # The manual clock, so that advancing it answers 200 rather than 409.
    app = create_app(Settings(seed=1, api_keys=(KEY,), clock="manual"))
    options = ConformOptions.full(
        app=app,
        api_key=KEY,
        seed=SEED,
        max_examples=20,
        contract=contract_path("emulator"),
    )
    report = run_contract(options)
    assert report.ok, report.summary()
    assert report.statuses[("GET /_emulator/health", 200)] > 0
    assert report.statuses[("POST /_emulator/clock/advance", 200)] > 0
    # HEAD on every read of the control plane was sent, and answered without a server error.
    heads = {op for op, _ in report.statuses if op.startswith("HEAD ")}
    assert heads >= {
        "HEAD /_emulator/health",
        "HEAD /_emulator/config",
        "HEAD /_emulator/clock",
        "HEAD /_emulator/tasks",
        "HEAD /_emulator/faults",
        "HEAD /_emulator/requests",
        "HEAD /_emulator/usage",
        "HEAD /_emulator/balances",
    }, heads
    assert report.statuses[("HEAD /_emulator/config", 200)] > 0


# -- safe defaults for a paid service -------------------------------------------------------------
def test_safe_contract_submits_only_the_cheapest_model_with_one_image() -> None:
    narrowed = restrict_to_model(load_contract(), CHEAPEST_MODEL)
    schemas = narrowed["components"]["schemas"]
    branch = schemas[schemas["SubmitRequest"]["$ref"].rsplit("/", 1)[-1]]
    assert branch["properties"]["model"]["enum"] == [CHEAPEST_MODEL]
    assert branch["properties"]["n"] == {"type": "integer", "enum": [1]}
    content = narrowed["paths"]["/v1/images/tasks"]["post"]["requestBody"]["content"]
    assert list(content) == ["application/json"]
    assert {e["value"]["model"] for e in content["application/json"]["examples"].values()} == {
        CHEAPEST_MODEL
    }


def test_default_run_sends_no_submission() -> None:
    app = create_app(Settings(seed=1, api_keys=(KEY,)))
    report = run_contract(
        ConformOptions(app=app, api_key=KEY, seed=SEED, max_examples=3, rate_limit=None)
    )
    assert report.ok, report.summary()
    assert report.tasks_created == 0
    assert not any(op.startswith("POST") for op, _ in report.statuses)


def test_run_with_generation_stops_at_the_task_cap() -> None:
    app = create_app(Settings(seed=1, api_keys=(KEY,), clock="per_poll"))
    options = ConformOptions(
        app=app,
        api_key=KEY,
        seed=SEED,
        allow_generation=True,
        max_tasks=2,
        rate_limit=None,
        poll_interval=0,
    )
    report = run_contract(options)
    assert report.ok, report.summary()
    assert report.tasks_created == 2
    assert report.statuses[("POST /v1/images/tasks", 200)] == 2
    assert any("task budget" in line for line in report.skipped), report.skipped
