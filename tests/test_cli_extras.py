"""What people look for first: ``--version``, a LICENSE in the sdist and the wheel, ``/healthz``,
opt-in CORS, an opt-in JSON access log, and a ``model_not_found`` that lists the models."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from emulator import Settings, create_app
from emulator.cli import main
from emulator.config import ConfigError, build_settings

from .conftest import AUTH, Client, MakeClient

ROOT = Path(__file__).parent.parent
NANO = {"model": "NanoBanana2-0.5K", "prompt": "a cat"}


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    version = importlib.metadata.version("image-task-emulator")
    assert capsys.readouterr().out.strip() == f"image-task-emulator {version}"


def test_the_sdist_and_the_wheel_carry_the_license(tmp_path: Path) -> None:
    declared = (ROOT / "pyproject.toml").read_text("utf-8")
    assert 'license = "MIT"' in declared
    assert (ROOT / "LICENSE").read_text("utf-8").startswith("MIT License")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for name in ("emulator", "contracts"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(tmp_path / "dist")],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with tarfile.open(sdist) as tar:
        assert any(n.endswith("/LICENSE") and n.count("/") == 1 for n in tar.getnames())
    with zipfile.ZipFile(wheel) as whl:
        licenses = [n for n in whl.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses and whl.read(licenses[0]).startswith(b"MIT License")
        metadata = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        assert b"License-Expression: MIT" in whl.read(metadata)


# -- /healthz ---------------------------------------------------------------------------
def test_healthz_answers_without_key_or_token(make_client: MakeClient) -> None:
    client = make_client(admin_token="s3cret")
    response = client.get("/healthz", headers={"Authorization": ""})
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert client.head("/healthz").status_code == 200
    assert (
        client.get("/_emulator/requests", headers={"X-Emulator-Token": "s3cret"}).json()["requests"]
        == []
    )  # not journaled: probes would fill the journal


def test_healthz_says_503_while_the_store_is_away(make_client: MakeClient) -> None:
    client = make_client(store="redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert (response.status_code, response.json()["status"]) == (503, "store_unavailable")


# -- CORS -------------------------------------------------------------------------------
def test_no_cors_headers_by_default(client: Client) -> None:
    response = client.submit(NANO, headers={"Origin": "http://localhost:5173"})
    assert not any(name.startswith("access-control-") for name in response.headers)
    preflight = client.options(
        "/v1/images/tasks",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 405


def test_cors_origins_let_a_browser_front_end_call_the_emulator(make_client: MakeClient) -> None:
    client = make_client(cors_origins=["http://localhost:5173"])
    origin = {"Origin": "http://localhost:5173"}
    preflight = client.options(
        "/v1/images/tasks",
        headers=origin
        | {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    answer = client.submit(NANO, headers=origin)
    assert answer.headers["access-control-allow-origin"] == "http://localhost:5173"
    other = client.submit(NANO, headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("origins", [["localhost:5173"], ["http://a.example/path"], [""]])
def test_cors_origins_must_be_origins(origins: list[str]) -> None:
    with pytest.raises(ConfigError, match="cors_origins"):
        build_settings(overrides={"cors_origins": origins})


def test_cors_origins_from_the_environment_are_a_list() -> None:
    environ = {"EMULATOR_CORS_ORIGINS": "http://a.example, https://b.example:8443"}
    settings = build_settings(environ=environ)
    assert settings.cors_origins == ("http://a.example", "https://b.example:8443")


# -- the JSON access log -------------------------------------------------------------------
def test_log_format_json_logs_one_masked_line_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(seed=1, clock="manual", log_format="json")
    with (
        caplog.at_level(logging.INFO, logger="emulator.access"),
        Client(
            create_app(settings), headers={"Authorization": "Bearer sk-secret-key-1234"}
        ) as client,
    ):
        task_id = client.submit_ok(NANO)
        client.advance(10_000)
        # (TestClient.task is the portal's task inside ``with``: read the poll directly.)
        url = client.get(f"/v1/images/tasks/{task_id}").json()["data"]["result_url"]
        client.get(url)
        client.put("/_emulator/balances/sk-secret-key-1234", json={"balance": 5})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "emulator.access"]
    assert [line["method"] for line in lines] == ["POST", "POST", "GET", "GET", "PUT"]
    submit = lines[0]
    assert set(submit) >= {"time", "method", "path", "status", "duration_ms", "task_id", "api_key"}
    assert (submit["path"], submit["status"], submit["task_id"]) == (
        "/v1/images/tasks",
        200,
        task_id,
    )
    text = caplog.text + json.dumps(lines)
    assert "sk-secret-key-1234" not in text
    token = url.split("/")[-2]
    assert token not in text
    assert lines[3]["path"].startswith(f"/_emulator/results/{task_id}/")


def test_log_format_text_logs_nothing_of_its_own(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="emulator.access"),
        Client(create_app(Settings(seed=1, clock="manual")), headers=AUTH) as client,
    ):
        client.submit_ok(NANO)
    assert not [r for r in caplog.records if r.name == "emulator.access"]


def test_log_format_is_text_or_json() -> None:
    with pytest.raises(ConfigError, match="log_format"):
        build_settings(overrides={"log_format": "xml"})


# -- model_not_found ---------------------------------------------------------------------
def test_model_not_found_names_the_field_and_lists_the_models(make_client: MakeClient) -> None:
    client = make_client(enabled_models=("NanoBanana2-0.5K", "gpt-image-2"))
    for model in ("dall-e-3", "NanoBananaPro-4K"):
        body = client.submit({"model": model, "prompt": "x"}).json()
        assert body["code"] == "model_not_found"
        assert "model must be one of: NanoBanana2-0.5K, gpt-image-2" in body["message"]
