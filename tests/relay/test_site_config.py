from __future__ import annotations

from pathlib import Path

import pytest

from evplug.relay.site_config import (
    DeviceConfig,
    SiteConfig,
    SiteConfigError,
    load_site_config,
    parse_site_config,
)

FULL = """
site_id = "garage-7"
bus_url = "nats://mothership.example:4222"
poll_interval_s = 1.5
discovery = true
discovery_interval_s = 120
mia_after_failed_polls = 5

[[devices]]
driver = "shelly_rpc"
url = "http://192.168.1.50"
username = "admin"
password = "s3cret"
fuze_id = "A"
fuze_limit_a = 32

[[devices]]
driver = "auto"
url = "192.168.1.51"
fuze_id = "A"
"""


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(FULL, encoding="utf-8")
    config = load_site_config(path)
    assert config == SiteConfig(
        site_id="garage-7",
        bus_url="nats://mothership.example:4222",
        poll_interval_s=1.5,
        discovery=True,
        discovery_interval_s=120.0,
        mia_after_failed_polls=5,
        devices=(
            DeviceConfig("shelly_rpc", "http://192.168.1.50", "admin", "s3cret", "A", 32.0),
            DeviceConfig("auto", "192.168.1.51", fuze_id="A"),
        ),
    )
    assert config.fuze_limits() == {"A": 32.0}
    assert "s3cret" not in repr(config)


def test_defaults() -> None:
    config = parse_site_config('site_id = "s1"')
    assert config == SiteConfig(site_id="s1")
    assert (config.poll_interval_s, config.discovery, config.mia_after_failed_polls) == (
        2.0,
        False,
        3,
    )
    assert config.bus_url is None and config.devices == ()


def test_config_is_frozen() -> None:
    config = parse_site_config('site_id = "s1"')
    with pytest.raises(AttributeError):
        config.site_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "site.toml: site_id: missing"),
        ('site_id = ""', "site.toml: site_id: must be a non-empty string"),
        ('site_id = "s"\npoll_interval_s = 0', "site.toml: poll_interval_s: must be positive"),
        ('site_id = "s"\npoll_interval_s = true', "site.toml: poll_interval_s: must be a number"),
        ('site_id = "s"\ndiscovery = "yes"', "site.toml: discovery: must be true or false"),
        (
            'site_id = "s"\nmia_after_failed_polls = 0',
            "site.toml: mia_after_failed_polls: must be a whole number of at least 1",
        ),
        ('site_id = "s"\npoll_interval = 2', "site.toml: poll_interval: unknown key"),
        ('site_id = "s"\ndevices = 3', "site.toml: devices: must be an array of tables"),
        (
            'site_id = "s"\n[[devices]]\ndriver = "tasmota"\nurl = "a"\n'
            '[[devices]]\ndriver = "tasmota"',
            "site.toml: devices[1].url: missing",
        ),
        (
            'site_id = "s"\n[[devices]]\nurl = "a"',
            "site.toml: devices[0].driver: missing",
        ),
        (
            'site_id = "s"\n[[devices]]\ndriver = "zigbee"\nurl = "a"',
            "site.toml: devices[0].driver: 'zigbee' is not one of shelly_rpc, shelly_gen1",
        ),
        (
            'site_id = "s"\n[[devices]]\ndriver = "tasmota"\nurl = "a"\npasword = "x"',
            "site.toml: devices[0].pasword: unknown key",
        ),
        (
            'site_id = "s"\n[[devices]]\ndriver = "tasmota"\nurl = "a"\nusername = "admin"',
            "site.toml: devices[0].password: missing (a username is given)",
        ),
        (
            'site_id = "s"\n[[devices]]\ndriver = "tasmota"\nurl = "a"\nfuze_limit_a = -16',
            "site.toml: devices[0].fuze_limit_a: must be positive",
        ),
        (
            'site_id = "s"\n'
            '[[devices]]\ndriver = "tasmota"\nurl = "a"\nfuze_id = "F"\nfuze_limit_a = 16\n'
            '[[devices]]\ndriver = "tasmota"\nurl = "b"\nfuze_id = "F"\nfuze_limit_a = 20\n',
            "site.toml: devices[1].fuze_limit_a: 20 A disagrees with 16 A for fuze 'F' in"
            " devices[0]",
        ),
        (
            'site_id = "s"\n[[devices]]\ndriver = "tasmota"\nurl = "a"\n'
            '[[devices]]\ndriver = "shelly_rpc"\nurl = "a"',
            "site.toml: devices[1].url: a is also devices[0]",
        ),
    ],
)
def test_mistakes_are_one_clear_message(text: str, message: str) -> None:
    with pytest.raises(SiteConfigError) as raised:
        parse_site_config(text)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_error_carries_the_key() -> None:
    with pytest.raises(SiteConfigError) as raised:
        parse_site_config('site_id = "s"\n[[devices]]\ndriver = "tasmota"')
    assert raised.value.key == "devices[0].url"


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(SiteConfigError) as raised:
        parse_site_config('site_id = "s"\n\n[[devices]]\ndriver = tasmota\n', source="g7.toml")
    assert str(raised.value).startswith("g7.toml: line 4, column 10: ")
    assert raised.value.line == 4


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match=r"missing\.toml: cannot read"):
        load_site_config(tmp_path / "missing.toml")
