"""The settings: one default each, four sources in order, and one clear line per wrong value."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from evplug.core import plug
from evplug.settings import (
    Flag,
    Settings,
    SettingsError,
    accepts,
    env_name,
    fields,
    load_settings,
)

ROOT = Path(__file__).resolve().parent.parent
NUMERIC = [(name, info) for name, info in fields() if info.annotation in (int, float)]


@pytest.fixture(autouse=True)
def _no_evplug_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the developer's shell exports must not leak into these tests."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("EVPLUG_"):
            monkeypatch.delenv(key)


def _bounds(info) -> tuple[float, float]:
    return next(m.ge for m in info.metadata if hasattr(m, "ge")), next(
        m.le for m in info.metadata if hasattr(m, "le")
    )


def test_the_state_machine_defaults_are_the_cores() -> None:
    assert load_settings().plug_settings() == plug.Settings()


def test_seconds_become_the_cores_milliseconds() -> None:
    settings = Settings(plug={"command_timeout_s": 1.5, "no_car_timeout_s": 600})
    core = settings.plug_settings()
    assert (core.command_timeout_ms, core.no_car_timeout_ms) == (1500, 600_000)


def test_derived_defaults(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, web={"host": "0.0.0.0", "port": 8080})
    assert settings.effective_database_url() == f"sqlite:///{tmp_path}/evplug.sqlite3"
    assert settings.effective_public_url() == "http://0.0.0.0:8080"
    given = Settings(web={"public_url": "https://charge.example/"})
    assert given.effective_public_url() == "https://charge.example"


def test_sources_in_order_defaults_file_env_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "evplug.toml"
    config.write_text('[web]\nport = 8001\nhost = "0.0.0.0"\n[relay]\npoll_interval_s = 5\n')
    assert load_settings().web.port == 8000
    from_file = load_settings(config)
    assert (from_file.web.port, from_file.web.host, from_file.relay.poll_interval_s) == (
        8001,
        "0.0.0.0",
        5.0,
    )
    monkeypatch.setenv("EVPLUG_WEB__PORT", "8002")
    from_env = load_settings(config)
    # One key of a group from the environment leaves the file's other keys of that group.
    assert (from_env.web.port, from_env.web.host) == (8002, "0.0.0.0")
    flags = (Flag("web.port", "--port", "8003"),)
    assert load_settings(config, flags).web.port == 8003


def test_the_config_file_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "evplug.toml"
    config.write_text('bus_url = "memory://"\n[price]\ncents_per_kwh = 42\n')
    monkeypatch.setenv("EVPLUG_CONFIG", str(config))
    assert load_settings().price.cents_per_kwh == 42


def test_a_wrong_env_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVPLUG_WEB__PORT", "abc")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == "EVPLUG_WEB__PORT: must be a whole number 1..65535, got 'abc'"


def test_a_wrong_flag_is_named_as_the_flag() -> None:
    with pytest.raises(
        SettingsError, match=r"^--port: must be a whole number 1\.\.65535, got '0'$"
    ):
        load_settings(flags=(Flag("web.port", "--port", "0"),))


def test_a_wrong_file_value_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "evplug.toml"
    config.write_text("[relay]\npoll_interval_s = nan\n[web]\nport = true\nprot = 1\n")
    with pytest.raises(SettingsError) as raised:
        load_settings(config)
    assert raised.value.problems == [
        f"{config}: web.port: must be a whole number 1..65535, got True",
        f"{config}: web.prot: unknown setting (known: host, port, public_url, request_timeout_s)",
        f"{config}: relay.poll_interval_s: must be a number 0.2..3600, got nan",
    ]


@pytest.mark.parametrize(("name", "info"), NUMERIC, ids=[n for n, _ in NUMERIC])
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "abc"])
def test_no_number_setting_takes_nan_inf_or_text(
    name: str, info, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env_name(name), text)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == f"{env_name(name)}: must be {accepts(info)}, got {text!r}"


@pytest.mark.parametrize(("name", "info"), NUMERIC, ids=[n for n, _ in NUMERIC])
def test_every_number_setting_is_bounded(name: str, info, monkeypatch: pytest.MonkeyPatch) -> None:
    low, high = _bounds(info)
    for outside in (low - 1e-3 if info.annotation is float else low - 1, high * 10 + 1):
        monkeypatch.setenv(env_name(name), str(outside))
        with pytest.raises(SettingsError) as raised:
            load_settings()
        got = repr(str(outside))
        assert str(raised.value) == f"{env_name(name)}: must be {accepts(info)}, got {got}"
    monkeypatch.setenv(env_name(name), str(high))
    bound_by_another = (
        "plug.complete_below_w",
        "telemetry.batch_rows",
        "relay.mothership_silent_s",
    )
    if name not in bound_by_another:
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("EVPLUG_BUS_URL", "redis://x", "must be memory:// or nats://host:port"),
        ("EVPLUG_DATABASE_URL", "mysql://db", "must be sqlite:///relative/path"),
        ("EVPLUG_DATABASE_URL", "sqlite:///:memory:", "must be sqlite:///relative/path"),
        ("EVPLUG_WEB__PUBLIC_URL", "charge.example", "must be an http:// or https:// URL"),
        ("EVPLUG_WEB__HOST", "my host", "must be a host name or IP address"),
        ("EVPLUG_PRICE__CURRENCY", "aud", "must be a three-letter ISO 4217 code"),
        ("EVPLUG_LOG__FORMAT", "xml", "must be one of console, json"),
    ],
)
def test_text_settings_say_what_they_accept(
    variable: str, value: str, accepted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(f"{variable}: {accepted}")
    assert str(raised.value).endswith(f"got {value!r}")


def test_accepted_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVPLUG_LOG__LEVEL", "DEBUG")
    monkeypatch.setenv("EVPLUG_BUS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("EVPLUG_DATABASE_URL", "postgresql://evplug@db/evplug")
    settings = load_settings()
    assert (settings.log.level, settings.bus_url) == ("debug", "nats://127.0.0.1:4222")


def test_a_misspelt_variable_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVPLUG_WEB__PROT", "8080")
    with pytest.raises(SettingsError, match=r"^EVPLUG_WEB__PROT: .*did you mean EVPLUG_WEB__PORT"):
        load_settings()


def test_settings_that_contradict_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVPLUG_PLUG__COMPLETE_BELOW_W", "2000")
    with pytest.raises(SettingsError, match=r"^EVPLUG_PLUG__COMPLETE_BELOW_W: must be below"):
        load_settings()
    monkeypatch.delenv("EVPLUG_PLUG__COMPLETE_BELOW_W")
    monkeypatch.setenv("EVPLUG_RELAY__UNSUPERVISED_MAX_S", "30")
    with pytest.raises(
        SettingsError,
        match=r"^EVPLUG_RELAY__UNSUPERVISED_MAX_S: must be at least relay.mothership_silent_s",
    ):
        load_settings()


def test_an_unreadable_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"missing\.toml: cannot read"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[web\n")
    with pytest.raises(SettingsError, match=r"broken\.toml: .*line 1"):
        load_settings(broken)


def test_reading_the_settings_loads_no_database_web_or_http_library() -> None:
    code = (
        "import sys, evplug.settings; "
        "print([m for m in ('sqlalchemy', 'fastapi', 'aiohttp', 'evplug.store', 'evplug.web')"
        " if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_readme_configuration_table_is_generated_from_the_model() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_config_table", ROOT / "tools" / "gen_config_table.py"
    )
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert gen.rewrite(readme) == readme, "README.md's settings table is stale: make config-table"
    for name, _ in fields():
        assert f"`{env_name(name)}`" in readme


def test_the_influx_export_is_off_by_default_and_2x_needs_its_org_and_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().influx.enabled is False
    monkeypatch.setenv("EVPLUG_INFLUX__ENABLED", "true")
    monkeypatch.setenv("EVPLUG_INFLUX__VERSION", "2")
    with pytest.raises(SettingsError, match=r"set influx.org and influx.token"):
        load_settings()
    monkeypatch.setenv("EVPLUG_INFLUX__ORG", "acme")
    monkeypatch.setenv("EVPLUG_INFLUX__TOKEN", "t0k3n")
    influx = load_settings().influx
    assert (influx.version, influx.org, influx.token) == (2, "acme", "t0k3n")
