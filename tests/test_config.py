from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import main
from emulator.config import ConfigError, Settings, build_settings


def test_defaults_are_real_clock_wrapped_envelope_on_loopback() -> None:
    s = Settings()
    assert (s.host, s.port, s.clock, s.envelope, s.time_scale) == (
        "127.0.0.1",
        8000,
        "real",
        "wrapped",
        1.0,
    )


def test_precedence_is_defaults_then_file_then_environment_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "emulator.toml"
    cfg.write_text('port = 9001\nclock = "manual"\nseed = 7\nenvelope = "bare"\n')
    s = build_settings(
        config_file=cfg,
        environ={"EMULATOR_PORT": "9002", "EMULATOR_SEED": "8", "HOME": "/x"},
        overrides={"port": "9003"},
        overrides_are_text=True,
    )
    assert s.port == 9003  # flag beats environment beats file
    assert s.seed == 8  # environment beats file
    assert s.clock == "manual"  # file beats default
    assert s.envelope == "bare"


def test_config_file_may_use_an_emulator_table(tmp_path: Path) -> None:
    cfg = tmp_path / "pyproject-like.toml"
    cfg.write_text('[emulator]\napi_keys = ["a", "b"]\n')
    assert build_settings(config_file=cfg).api_keys == ("a", "b")


def test_unknown_key_in_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("tyme_scale = 2\n")
    with pytest.raises(ConfigError, match="unknown setting 'tyme_scale'") as raised:
        build_settings(config_file=cfg)
    assert raised.value.message.endswith("; did you mean 'time_scale'?")
    assert raised.value.field == "tyme_scale"


@pytest.mark.parametrize(
    ("overrides", "field", "ending"),
    [
        ({"envelop": "bare"}, "envelop", "(from arguments); did you mean 'envelope'?"),
        ({"qwertyuiop": 1}, "qwertyuiop", "(from arguments)"),  # nothing close: no guess
        ({"envelope": "naked"}, "envelope", "got 'naked'"),
        ({"api_keys": [1]}, "api_keys", "got [1]"),
        ({"faults": 5}, "faults", "must be a list of rules"),
        ({"failure_rate": 2}, "failure_rate", "between 0 and 1, got 2.0"),
    ],
)
def test_every_refusal_of_a_setting_names_it_as_its_field(
    overrides: dict[str, object], field: str, ending: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_settings(overrides=overrides)
    assert raised.value.field == field
    assert raised.value.message.endswith(ending)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('clock = "sundial"', "'clock'"),
        ('port = "eighty"', "'port'"),
        ("time_scale = -1", "time_scale must be between 0 and 1000"),
        ("time_scale = inf", "time_scale' .* must be a finite number"),
        ("task_ttl_seconds = nan", "task_ttl_seconds' .* must be a finite number"),
        ("time_scale = 1e308", "time_scale must be between 0 and 1000"),
        ("max_tasks = 100000000000000000000", "max_tasks must be between 0 and 100000000"),
        ('admin_token = "pässwörd"', "admin_token.* must be 1 to 256 visible ASCII"),
        ("always_list_results = 3", "'always_list_results'"),
        ("api_keys = [1]", "'api_keys'"),
    ],
)
def test_bad_value_in_config_file_is_an_error_naming_the_key(
    tmp_path: Path, text: str, needle: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text + "\n")
    with pytest.raises(ConfigError, match=needle):
        build_settings(config_file=cfg)


def test_environment_lists_are_comma_separated() -> None:
    s = build_settings(environ={"EMULATOR_ENABLED_MODELS": "gpt-image-2, NanoBanana2-0.5K"})
    assert s.enabled_models == ("gpt-image-2", "NanoBanana2-0.5K")


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_settings(config_file=tmp_path / "nope.toml")


def test_cli_exits_2_naming_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("colour = 1\n")
    assert main(["serve", "--config", str(cfg)]) == 2
    assert "unknown setting 'colour'" in capsys.readouterr().err


def test_cli_rejects_a_bad_flag_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--time-scale", "fast"]) == 2
    assert "time_scale" in capsys.readouterr().err


def test_replace_validates_the_new_value() -> None:
    with pytest.raises(ConfigError, match="submit_status"):
        Settings().replace(submit_status=201)


def test_store_defaults_to_memory_with_bounded_tasks() -> None:
    s = Settings()
    assert (s.store, s.store_url, s.state_dir, s.store_prefix) == (
        "memory",
        "memory",
        None,
        "emulator",
    )
    assert (s.task_ttl_seconds, s.max_tasks) == (86_400.0, 100_000)


def test_store_comes_from_environment_and_flags(tmp_path: Path) -> None:
    s = build_settings(environ={"EMULATOR_STORE": f"sqlite://{tmp_path}/a.db"})
    assert s.store_url == f"sqlite://{tmp_path}/a.db"
    s = build_settings(
        environ={"EMULATOR_STORE": "memory", "EMULATOR_MAX_TASKS": "10"},
        overrides={"store": f"sqlite://{tmp_path}/b.db"},
        overrides_are_text=True,
    )
    assert (s.store_url, s.max_tasks) == (f"sqlite://{tmp_path}/b.db", 10)


def test_state_dir_is_shorthand_for_a_sqlite_file_in_it(tmp_path: Path) -> None:
    s = build_settings(overrides={"state_dir": str(tmp_path / "st")}, overrides_are_text=True)
    assert s.store_url == f"sqlite://{tmp_path}/st/emulator.db"
    s = build_settings(
        overrides={"store": "sqlite", "state_dir": str(tmp_path)}, overrides_are_text=True
    )
    assert s.store_url == f"sqlite://{tmp_path}/emulator.db"


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"store": "postgres://db"}, "setting 'store' must be"),
        ({"store": "sqlite://"}, "setting 'store' must be"),
        ({"store": "sqlite:///x.db", "state_dir": "/tmp/x"}, "either 'store' or 'state_dir'"),
        # memory is the default too: given with a state_dir it ran on SQLite while the
        # config said memory
        ({"store": "memory", "state_dir": "/tmp/x"}, "either 'store' or 'state_dir'"),
        ({"store": "memory://", "state_dir": "/tmp/x"}, "either 'store' or 'state_dir'"),
        ({"store_prefix": ""}, "store_prefix"),
        ({"task_ttl_seconds": -1}, "task_ttl_seconds must be between 0 and 1000000000"),
        ({"max_tasks": -5}, "max_tasks must be between 0 and 100000000"),
    ],
)
def test_bad_store_settings_name_the_key(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings().replace(**changes)


def test_cli_store_flag_with_a_bad_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--store", "mongodb://x"]) == 2
    assert "setting 'store'" in capsys.readouterr().err


def test_cli_store_that_cannot_be_opened_stops_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    assert main(["serve", "--state-dir", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert "cannot start" in err and "setting 'store'" in err and "cannot be opened" in err


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"clock": "manul"}, "clock"),
        ({"per_poll_steps": 0}, "per_poll_steps"),
        ({"time_scale": -5}, "time_scale"),
        ({"unknown_task_status": 418}, "unknown_task_status"),
    ],
)
def test_directly_built_settings_are_checked_by_create_app(
    change: dict[str, object], named: str
) -> None:
    from emulator import create_app

    with pytest.raises(ConfigError, match=named):
        create_app(Settings(**change))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"EMULATOR_TIME_SCALE": "inf"}, "must be a finite number"),
        ({"EMULATOR_TASK_TTL_SECONDS": "Infinity"}, "must be a finite number"),
        ({"EMULATOR_FAILURE_RATE": "nan"}, "must be a finite number"),
        ({"EMULATOR_POLL_LATENCY": "1e308"}, "poll_latency must be between 0 and 600"),
        ({"EMULATOR_JOURNAL_LIMIT": "99999999999"}, "journal_limit must be between"),
        ({"EMULATOR_SEED": "9" * 30}, "seed must be between"),
        ({"EMULATOR_PUBLIC_BASE_URL": "http://" + "h" * 5000}, "longer than the limit"),
        ({"EMULATOR_API_KEYS": "sk-a," + "k" * 5000}, "api_keys'"),
    ],
)
def test_environment_values_are_finite_in_range_and_bounded(
    environ: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_settings(environ=environ)


def test_lone_surrogates_are_refused_in_every_kind_of_setting() -> None:
    for change in (
        {"public_base_url": "http://x/\ud800"},
        {"store_prefix": "p\udfff"},
        {"api_keys": ("sk-ok", "sk-\ud800")},
        {"enabled_models": ("\ud800",)},
        {"log_level": "\ud800"},
    ):
        with pytest.raises(ConfigError, match="lone surrogate") as caught:
            Settings().replace(**change)
        caught.value.message.encode("utf-8")  # the message itself can be written anywhere


@pytest.mark.parametrize("token", ["pässwörd", "two words", "tab\there", "", "x" * 257])
def test_admin_token_must_be_visible_ascii(token: str) -> None:
    with pytest.raises(ConfigError, match=r"admin_token.* must be 1 to 256 visible ASCII"):
        Settings(admin_token=token).replace()


@pytest.mark.parametrize("token", ["pässwörd", ""])
def test_a_bad_admin_token_is_refused_naming_where_it_came_from(tmp_path: Path, token: str) -> None:
    """One check of the token's form, whichever way the token came: each refusal names the
    flag, the environment variable, the config file, the arguments of ``replace`` or the
    ``Settings`` field it was given in, so the user knows what to fix."""
    from emulator import create_app
    from emulator.cli import _parser, settings_from_args

    cfg = tmp_path / "emulator.toml"
    cfg.write_text(f'admin_token = "{token}"\n')
    attempts: list[tuple[Any, str]] = [
        (
            lambda: settings_from_args(_parser().parse_args(["serve", "--admin-token", token]), {}),
            "the command line",
        ),
        (
            lambda: build_settings(environ={"EMULATOR_ADMIN_TOKEN": token}),
            "environment variable EMULATOR_ADMIN_TOKEN",
        ),
        (lambda: build_settings(config_file=cfg), f"config file {str(cfg)!r}"),
        (lambda: Settings().replace(admin_token=token), "arguments"),
        (lambda: Settings(admin_token=token).replace(), "Settings"),
        (lambda: create_app(Settings(admin_token=token)), "Settings"),
    ]
    for attempt, source in attempts:
        with pytest.raises(ConfigError) as caught:
            attempt()
        message = caught.value.message
        assert message.startswith(f"setting 'admin_token' (from {source}) "), message
        assert ("is empty" if token == "" else "must be 1 to 256 visible ASCII") in message
        assert caught.value.field == "admin_token", message


def test_cli_refuses_a_non_ascii_admin_token_at_start_up() -> None:
    # Through the CLI's own settings path (main() would serve if the check were missing).
    from emulator.cli import _parser, settings_from_args

    args = _parser().parse_args(["serve", "--admin-token", "pässwörd"])
    with pytest.raises(ConfigError, match=r"admin_token.* must be 1 to 256 visible ASCII"):
        settings_from_args(args, {})
    with pytest.raises(ConfigError, match=r"admin_token.* must be 1 to 256 visible ASCII"):
        settings_from_args(_parser().parse_args(["serve"]), {"EMULATOR_ADMIN_TOKEN": "tök"})


def test_every_numeric_setting_has_a_documented_range() -> None:
    import typing

    from emulator.config.values import RANGES

    hints = typing.get_type_hints(Settings)
    numeric = {
        name
        for name, hint in hints.items()
        if hint in (int, float, int | None, float | None) and name not in ("unknown_task_status",)
    }
    assert numeric <= set(RANGES), numeric - set(RANGES)
    doc = (Path(__file__).parent.parent / "docs" / "hardening.md").read_text("utf-8")
    for name in RANGES:
        assert f"`{name}`" in doc, f"{name} is missing from the ranges in docs/hardening.md"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("argv", "environ", "source"),
    [
        (["--admin-token", ""], {}, "command line"),
        ([], {"EMULATOR_ADMIN_TOKEN": ""}, "environment variable EMULATOR_ADMIN_TOKEN"),
    ],
)
def test_an_empty_admin_token_stops_serve_naming_the_setting_and_where_it_came_from(
    argv: list[str], environ: dict[str, str], source: str
) -> None:
    """A CI script's ``--admin-token "$TOKEN"`` with TOKEN unset must not serve an open
    control plane. In a process of its own: where the check is missing, it serves (and the
    timeout fails the test) instead of exiting 2."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")} | environ
    command = [sys.executable, "-m", "emulator", "serve", "--port", str(_free_port()), *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "'admin_token'" in done.stderr and source in done.stderr, done.stderr
    assert "is empty" in done.stderr, done.stderr


def test_an_empty_admin_token_in_the_config_file_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "emulator.toml"
    cfg.write_text('admin_token = ""\n')
    with pytest.raises(ConfigError, match=r"'admin_token' \(from config file .*emulator.toml"):
        build_settings(config_file=cfg)


@pytest.mark.parametrize("word", ["none", "null"])
def test_no_word_turns_the_admin_token_off(word: str) -> None:
    """``none`` sets other optional settings to none; the admin token is turned off only by
    leaving it unset (jq -r prints ``null`` for a missing secret)."""
    from emulator.cli import _parser, settings_from_args

    with pytest.raises(ConfigError, match=r"'admin_token' .*leave admin_token unset"):
        settings_from_args(_parser().parse_args(["serve", "--admin-token", word]), {})
    with pytest.raises(ConfigError, match=r"'admin_token' .*leave admin_token unset"):
        build_settings(environ={"EMULATOR_ADMIN_TOKEN": word})


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("SEED", "'seed' (from environment variable EMULATOR_SEED) must be an integer"),
        ("PUBLIC_BASE_URL", "public_base_url must be an http:// or https:// URL"),
        ("STATE_DIR", "state_dir must name a folder"),
        ("HOST", "host must name an address"),
        ("CATALOGUE_FILE", "catalogue_file must name a file"),
        ("TIMING_FILE", "timing_file must name a file"),
        ("PRICE_FILE", "price_file must name a file"),
        ("FAULT_FILE", "fault_file must name a file"),
        ("STORE", "setting 'store' must be"),
        ("CLOCK", "'clock' (from environment variable EMULATOR_CLOCK) must be one of"),
    ],
)
def test_an_empty_environment_variable_is_the_empty_value_never_unset(
    name: str, needle: str
) -> None:
    """What ``x = ""`` in the config file says, ``EMULATOR_X=`` says: never the default."""
    with pytest.raises(ConfigError, match=re.escape(needle)):
        build_settings(environ={f"EMULATOR_{name}": ""})


def test_an_empty_list_variable_is_the_empty_list_and_none_still_unsets_optional_ones(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "emulator.toml"
    cfg.write_text('api_keys = ["sk-a"]\nseed = 7\n')
    s = build_settings(config_file=cfg, environ={"EMULATOR_API_KEYS": "", "EMULATOR_SEED": "none"})
    assert (s.api_keys, s.seed) == ((), None)


def test_patch_cannot_set_or_empty_the_admin_token(make_client: Any) -> None:
    client = make_client(admin_token="s3cret")
    token = {"X-Emulator-Token": "s3cret"}
    for value in ("", None, "other"):
        r = client.patch("/_emulator/config", json={"admin_token": value}, headers=token)
        assert r.status_code == 400
        assert "'admin_token' cannot change while serving" in r.json()["message"]
    assert client.get("/_emulator/config").status_code == 401  # still guarded


def test_cli_store_memory_with_a_state_dir_is_refused(tmp_path: Path) -> None:
    # The flags' settings (serve exits 2 on a ConfigError); not main(), which would serve.
    from emulator.cli import _parser, settings_from_args

    args = _parser().parse_args(["serve", "--store", "memory", "--state-dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="either 'store' or 'state_dir'"):
        settings_from_args(args, {})
    alone = settings_from_args(_parser().parse_args(["serve", "--state-dir", str(tmp_path)]), {})
    assert alone.store_url == f"sqlite://{tmp_path}/emulator.db"


@pytest.mark.parametrize(
    "url",
    [
        *("http://a b", "http://x/?q=1", "http://x/#f", "http://x/?q=1#f", "http://u@x"),
        # no host, a port that is no number (or none a socket has), an unclosed bracket
        *("http://", "http://:8000", "http://x:abc", "http://x:0", "http://x:70000"),
        "http://[::1",
    ],
)
def test_a_public_base_url_results_cannot_be_built_on_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="public_base_url must be an http") as refused:
        Settings().replace(public_base_url=url)
    assert refused.value.field == "public_base_url"


@pytest.mark.parametrize(
    "url",
    [
        *("https://lb.example:8443/emulator/", "http://127.0.0.1:8000", "http://[::1]:8000"),
        "http://host.docker.internal/~a@b%20c/",
    ],
)
def test_a_public_base_url_with_a_port_and_a_path_is_taken(url: str) -> None:
    assert Settings().replace(public_base_url=url).public_base_url == url


@pytest.mark.parametrize("url", ["http://a b", "http://x/?q=1#f"])
def test_patching_a_public_base_url_results_cannot_be_built_on_is_refused(
    client: Any, url: str
) -> None:
    response = client.patch("/_emulator/config", json={"public_base_url": url})
    assert response.status_code == 400
    assert response.json()["message"].startswith("public_base_url must be an http")
    assert client.get("/_emulator/config").json()["public_base_url"] is None
