"""Catalogue rules through HTTP: every model, format, size, ratio and n bound."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

import pytest

from emulator.core.catalogue import Catalogue, nearest_ratio

from .conftest import Client

CATALOGUE = Catalogue.load()
RAW: dict[str, Any] = tomllib.loads(
    resources.files("emulator").joinpath("data/catalogue.toml").read_text("utf-8")
)
NANO = [m for m, spec in CATALOGUE.models.items() if spec.family == "nano"]
ALL_FORMATS = ["png", "jpeg", "webp"]


def test_catalogue_has_the_ten_models_and_48_sizes_of_the_reference() -> None:
    assert set(CATALOGUE.models) == {
        "NanoBanana",
        "NanoBanana2-0.5K",
        "NanoBanana2-1K",
        "NanoBanana2-2K",
        "NanoBanana2-4K",
        "NanoBananaPro-1K",
        "NanoBananaPro-2K",
        "NanoBananaPro-4K",
        "NanoBananaPro-8K",
        "gpt-image-2",
    }
    assert len(CATALOGUE.gpt_sizes) == 48
    assert CATALOGUE.gpt_sizes["2048x2048"] == "4K"
    assert CATALOGUE.gpt_sizes["2560x2048"] == "2K"


def _payload(model: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": model, "prompt": "a red cube"}
    if model == "gpt-image-2":
        base["size"] = "1024x1024"
    return base | extra


@pytest.mark.parametrize("model", list(CATALOGUE.models))
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_each_model_accepts_exactly_its_output_formats(
    client: Client, model: str, fmt: str
) -> None:
    response = client.submit(_payload(model, output_format=fmt))
    allowed = fmt in CATALOGUE.models[model].output_formats
    expected_allowed = not (model.startswith(("NanoBanana2-", "NanoBananaPro-")) and fmt == "webp")
    assert allowed == expected_allowed
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_request"
        assert "output_format" in response.json()["message"]


@pytest.mark.parametrize("size", list(RAW["gpt_sizes"]))
def test_gpt_image_2_accepts_each_listed_size_with_exact_pixels(client: Client, size: str) -> None:
    task = client.run_to_end({"model": "gpt-image-2", "prompt": "x", "size": size})
    assert task["status"] == "succeeded"
    img = client.image(task["result_url"])
    assert f"{img.width}x{img.height}" == size
    assert img.format == "PNG"


@pytest.mark.parametrize("size", ["1000x1000", "4096x4096", "1024X1024", "big", "1024x768 "])
def test_gpt_image_2_rejects_an_unlisted_size(client: Client, size: str) -> None:
    response = client.submit({"model": "gpt-image-2", "prompt": "x", "size": size})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_request" and body["data"] is None
    assert "size" in body["message"]


def test_gpt_image_2_requires_size(client: Client) -> None:
    response = client.submit({"model": "gpt-image-2", "prompt": "x"})
    assert response.status_code == 400
    assert response.json()["message"] == "size is required for gpt-image-2"


def test_gpt_image_2_rejects_aspect_ratio(client: Client) -> None:
    response = client.submit(
        {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024", "aspect_ratio": "1:1"}
    )
    assert response.status_code == 400
    assert "aspect_ratio is not supported by gpt-image-2" in response.json()["message"]


@pytest.mark.parametrize("model", NANO)
@pytest.mark.parametrize("ratio", RAW["families"]["nano"]["aspect_ratios"])
def test_nano_tier_and_ratio_give_the_table_pixels(client: Client, model: str, ratio: str) -> None:
    table = RAW["pixels"][RAW["models"][model]["pixels"]]
    fmt = "jpeg"  # every NanoBanana model supports it, and it checks the format too
    task = client.run_to_end(
        {"model": model, "prompt": "x", "aspect_ratio": ratio, "output_format": fmt}
    )
    img = client.image(task["result_url"])
    assert f"{img.width}x{img.height}" == table[ratio]
    assert img.format == "JPEG"


def test_nano_8k_doubles_the_4k_column() -> None:
    four, eight = RAW["pixels"]["four_k"], RAW["pixels"]["eight_k"]
    for ratio, px in four.items():
        w, h = (int(v) for v in px.split("x"))
        assert eight[ratio] == f"{2 * w}x{2 * h}"


def test_nano_default_ratio_is_square(client: Client) -> None:
    task = client.run_to_end({"model": "NanoBanana2-0.5K", "prompt": "x"})
    assert client.image(task["result_url"]).size == (512, 512)


def test_nano_rejects_an_unknown_aspect_ratio(client: Client) -> None:
    response = client.submit({"model": "NanoBanana", "prompt": "x", "aspect_ratio": "7:3"})
    assert response.status_code == 400
    assert "aspect_ratio '7:3'" in response.json()["message"]


def test_nano_size_picks_the_nearest_ratio_unless_aspect_ratio_is_given(client: Client) -> None:
    task = client.run_to_end({"model": "NanoBanana2-1K", "prompt": "x", "size": "1920x1080"})
    assert client.image(task["result_url"]).size == (1376, 768)  # 16:9
    task = client.run_to_end(
        {"model": "NanoBanana2-1K", "prompt": "x", "size": "1920x1080", "aspect_ratio": "1:1"}
    )
    assert client.image(task["result_url"]).size == (1024, 1024)


@pytest.mark.parametrize(
    "size",
    ["large", "1K ", " 2K", "3K", "0.5", "K", "16K", "auto1", "4096", "1024x768\n", "1\u212a"],
)
def test_nano_rejects_a_size_that_is_neither_wxh_nor_a_tier_word(client: Client, size: str) -> None:
    response = client.submit({"model": "NanoBanana", "prompt": "x", "size": size})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_request"
    assert body["message"].startswith("size must be WIDTHxHEIGHT (e.g. 1024x1024)")
    assert "0.5K, 1K, 2K, 4K, 8K" in body["message"] and "auto" in body["message"]


@pytest.mark.parametrize(
    "size", ["0.5K", "1K", "2K", "4K", "8K", "0.5k", "1k", "2k", "4k", "8k", "auto", "AUTO", "Auto"]
)
@pytest.mark.parametrize("model", ["NanoBanana", "NanoBanana2-0.5K", "NanoBananaPro-8K"])
def test_nano_accepts_and_ignores_a_tier_word_as_size(
    client: Client, model: str, size: str
) -> None:
    # D-6: the model name fixes the tier, so "4K" on a 0.5K model changes nothing; the
    # aspect ratio stays the requested one (or the default), never one guessed from the word.
    for ratio in ("16:9", None):
        payload = {"model": model, "prompt": "x", "size": size, "aspect_ratio": ratio}
        task = client.get(f"/_emulator/tasks/{client.submit_ok(payload)}").json()["task"]
        assert (task["width"], task["height"]) == _pixels(model, ratio or "1:1")


def test_a_tier_word_as_size_gives_the_model_s_own_picture(client: Client) -> None:
    task = client.run_to_end({"model": "NanoBanana2-0.5K", "prompt": "x", "size": "4K"})
    assert client.image(task["result_url"]).size == (512, 512)


def _pixels(model: str, ratio: str) -> tuple[int, int]:
    w, h = RAW["pixels"][RAW["models"][model]["pixels"]][ratio].split("x")
    return int(w), int(h)


def test_gpt_image_2_does_not_take_a_tier_word_as_size(client: Client) -> None:
    response = client.submit({"model": "gpt-image-2", "prompt": "x", "size": "1K"})
    assert response.status_code == 400
    assert "size '1K' is not one of the 48 sizes" in response.json()["message"]


def test_nearest_ratio_is_symmetric_on_a_log_scale() -> None:
    ratios = RAW["families"]["nano"]["aspect_ratios"]
    assert nearest_ratio((1000, 1000), ratios) == "1:1"
    assert nearest_ratio((2100, 900), ratios) == "21:9"
    assert nearest_ratio((900, 2100), ratios) == "9:16"


@pytest.mark.parametrize(
    ("model", "n", "ok"),
    [
        ("gpt-image-2", 1, True),
        ("gpt-image-2", 8, True),
        ("gpt-image-2", 0, False),
        ("gpt-image-2", 9, False),
        ("NanoBanana", 1, True),
        ("NanoBanana", 4, True),
        ("NanoBanana", 5, False),
        ("NanoBanana2-0.5K", 0, False),
        ("NanoBanana2-0.5K", -1, False),
    ],
)
def test_n_bounds_per_family(client: Client, model: str, n: int, ok: bool) -> None:
    response = client.submit(_payload(model, n=n))
    assert response.status_code == (200 if ok else 400), response.text
    if not ok:
        assert response.json()["message"].startswith("n must be between")


def test_nano_max_n_is_a_setting(make_client: Any) -> None:
    client = make_client(nano_max_n=2)
    assert client.submit(_payload("NanoBanana", n=3)).status_code == 400
    assert client.submit(_payload("NanoBanana", n=2)).status_code == 200


def test_n_images_are_returned_and_listed(client: Client) -> None:
    task = client.run_to_end(_payload("gpt-image-2", n=3, quality="low", output_format="webp"))
    meta = task["metadata"]
    assert meta["result_count"] == 3
    assert len(meta["result_urls"]) == 3
    assert task["result_url"] == meta["result_urls"][0]
    images = [client.image(url) for url in meta["result_urls"]]
    assert {img.format for img in images} == {"WEBP"}
    assert len({img.tobytes() for img in images}) == 3  # each image differs


@pytest.mark.parametrize("quality", ["low", "MEDIUM", "High"])
def test_gpt_quality_is_case_insensitive(client: Client, quality: str) -> None:
    assert client.submit(_payload("gpt-image-2", quality=quality)).status_code == 200


@pytest.mark.parametrize("quality", ["HIGH", "High", "hIgH"])
def test_gpt_quality_in_any_case_is_kept_and_billed_as_its_lower_case(
    client: Client, quality: str
) -> None:
    task_id = client.submit_ok(_payload("gpt-image-2", quality=quality))
    assert client.get(f"/_emulator/tasks/{task_id}").json()["task"]["quality"] == "high"
    [charge] = client.get("/_emulator/usage").json()["entries"]
    assert charge["quality"] == "high"
    high = client.submit_ok(_payload("gpt-image-2", quality="high"))
    entries = client.get("/_emulator/usage").json()["entries"]
    prices = {entry["task_id"]: entry["unit_price"] for entry in entries}
    assert prices[task_id] == prices[high]


def test_gpt_quality_in_any_case_is_accepted_in_a_form_too(client: Client) -> None:
    form = {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024", "quality": "LOW"}
    parts = {name: (None, value) for name, value in form.items()}  # no file name: form fields
    response = client.post("/v1/images/tasks", files=parts)
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 200, response.text


def test_gpt_rejects_an_unknown_quality(client: Client) -> None:
    response = client.submit(_payload("gpt-image-2", quality="ultra"))
    assert response.status_code == 400
    assert "quality must be one of low, medium, high" in response.json()["message"]


def test_nano_accepts_and_ignores_quality(client: Client) -> None:
    assert client.submit(_payload("NanoBanana", quality="ultra")).status_code == 200


def test_unknown_model_is_model_not_found(client: Client) -> None:
    response = client.submit({"model": "dall-e-3", "prompt": "x"})
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["data"]) == ("model_not_found", None)
    assert body["message"].startswith("model 'dall-e-3' does not exist; model must be one of: ")


def test_disabled_model_is_model_not_found(make_client: Any) -> None:
    client = make_client(enabled_models=("NanoBanana2-0.5K", "gpt-image-2"))
    response = client.submit({"model": "NanoBananaPro-4K", "prompt": "x"})
    assert response.status_code == 400
    assert response.json()["code"] == "model_not_found"
    assert "not enabled" in response.json()["message"]
    assert client.submit({"model": "NanoBanana2-0.5K", "prompt": "x"}).status_code == 200


def test_a_plan_asked_again_is_the_same_and_a_refusal_is_refused_again() -> None:
    catalogue = Catalogue.load()
    asked = {"size": "1536x1024", "aspect_ratio": None, "quality": "HIGH", "n": 2}
    first = catalogue.plan(model="gpt-image-2", output_format=None, **asked)
    again = catalogue.plan(model="gpt-image-2", output_format=None, **asked)
    assert again == first and (again.quality, again.tier, again.n) == ("high", first.tier, 2)
    for _ in range(2):
        with pytest.raises(Exception, match="quality must be one of"):
            catalogue.plan(model="gpt-image-2", output_format=None, **(asked | {"quality": "x"}))


def test_plans_kept_are_bounded_whatever_sizes_clients_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from emulator.core import catalogue as module

    monkeypatch.setattr(module, "MAX_PLANS_KEPT", 8)
    catalogue = Catalogue.load()
    sizes = [f"{w}x1000" for w in range(1000, 1040)]
    plans = [
        catalogue.plan(
            model="NanoBanana", size=s, aspect_ratio=None, quality=None, n=1, output_format=None
        )
        for s in sizes
    ]
    assert len(catalogue._plans) == 8
    again = [
        catalogue.plan(
            model="NanoBanana", size=s, aspect_ratio=None, quality=None, n=1, output_format=None
        )
        for s in sizes
    ]
    assert again == plans
