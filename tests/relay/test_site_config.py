from __future__ import annotations

from pathlib import Path

import pytest

from evplug.core.circuits import Circuit
from evplug.relay.site_config import (
    DeviceConfig,
    SiteConfig,
    SiteConfigError,
    load_site_config,
    parse_site_config,
)

FULL = """
site_id = "garage-7"
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
    # No poll interval of its own: the relay settings' applies.
    assert (config.poll_interval_s, config.discovery, config.mia_after_failed_polls) == (
        None,
        False,
        3,
    )
    assert config.devices == ()


def test_config_is_frozen() -> None:
    config = parse_site_config('site_id = "s1"')
    with pytest.raises(AttributeError):
        config.site_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "site.toml: site_id: missing"),
        ('site_id = ""', "site.toml: site_id: must be a non-empty string"),
        (
            'site_id = "s"\npoll_interval_s = 0',
            "site.toml: poll_interval_s: must be a number 0.2..3600, not 0",
        ),
        ('site_id = "s"\npoll_interval_s = true', "site.toml: poll_interval_s: must be a number"),
        ('site_id = "s"\ndiscovery = "yes"', "site.toml: discovery: must be true or false"),
        (
            'site_id = "s"\nmia_after_failed_polls = 0',
            "site.toml: mia_after_failed_polls: must be a whole number 1..1000",
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
            "site.toml: devices[0].fuze_limit_a: must be a number 1..10000",
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


# -- input validation: each of these passed the check before and failed later, or silently ----


@pytest.mark.parametrize(
    "site_id", ["garage.7", "garage 7", "garage*", "garage>", "g\t7", "x" * 65]
)
def test_a_site_id_that_cannot_name_bus_subjects_is_refused_at_the_door(site_id: str) -> None:
    with pytest.raises(SiteConfigError) as raised:
        parse_site_config(f"site_id = {site_id!r}")
    assert str(raised.value).startswith("site.toml: site_id: ")
    assert raised.value.key == "site_id"
    assert "\n" not in str(raised.value)


def test_a_fuze_id_with_a_slash_is_refused() -> None:
    with pytest.raises(SiteConfigError, match=r"devices\[0\]\.fuze_id: .*'/'"):
        parse_site_config(
            'site_id = "s"\n[[devices]]\ndriver = "tasmota"\nurl = "a"\nfuze_id = "A/B"'
        )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("poll_interval_s", "nan"),
        ("poll_interval_s", "inf"),
        ("poll_interval_s", "1e-9"),
        ("poll_interval_s", "1e9"),
        ("discovery_interval_s", "nan"),
        ("discovery_interval_s", "inf"),
        ("discovery_interval_s", "0.001"),
        ("mia_after_failed_polls", "1000000"),
    ],
)
def test_site_numbers_are_bounded_and_finite(key: str, value: str) -> None:
    with pytest.raises(SiteConfigError, match=rf"^site\.toml: {key}: must be a (whole )?number \d"):
        parse_site_config(f'site_id = "s"\n{key} = {value}')


@pytest.mark.parametrize("limit", ["nan", "inf", "0.5", "1e6"])
def test_a_fuze_limit_is_bounded_and_finite(limit: str) -> None:
    text = 'site_id = "s"\n[[devices]]\ndriver = "tasmota"\nurl = "a"\nfuze_id = "A"\n'
    with pytest.raises(
        SiteConfigError, match=r"devices\[0\]\.fuze_limit_a: must be a number 1\.\."
    ):
        parse_site_config(text + f"fuze_limit_a = {limit}")


@pytest.mark.parametrize(
    "second",
    [
        "http://127.0.0.1:8081/",
        "HTTP://127.0.0.1:8081",
        "127.0.0.1:8081",
        " http://127.0.0.1:8081 ",
    ],
)
def test_one_relay_under_two_spellings_is_one_device(second: str) -> None:
    text = (
        'site_id = "s"\n[[devices]]\ndriver = "shelly_rpc"\nurl = "http://127.0.0.1:8081"\n'
        f'[[devices]]\ndriver = "shelly_rpc"\nurl = "{second}"\n'
    )
    with pytest.raises(SiteConfigError) as raised:
        parse_site_config(text)
    assert str(raised.value).startswith(
        f"site.toml: devices[1].url: {second.strip()} is also devices[0]"
    )
    assert raised.value.key == "devices[1].url"


@pytest.mark.parametrize(
    ("first", "second"),
    [("http://relay.lan", "http://RELAY.lan:80/"), ("https://relay.lan:443", "https://relay.lan")],
)
def test_the_default_port_written_or_not_is_one_device(first: str, second: str) -> None:
    text = (
        f'site_id = "s"\n[[devices]]\ndriver = "shelly_rpc"\nurl = "{first}"\n'
        f'[[devices]]\ndriver = "shelly_rpc"\nurl = "{second}"\n'
    )
    with pytest.raises(SiteConfigError, match=r"devices\[1\]\.url: .* is also devices\[0\]"):
        parse_site_config(text)


def test_other_ports_are_other_devices() -> None:
    text = (
        'site_id = "s"\n[[devices]]\ndriver = "shelly_rpc"\nurl = "http://127.0.0.1:8081"\n'
        '[[devices]]\ndriver = "shelly_rpc"\nurl = "http://127.0.0.1:8082"\n'
    )
    assert len(parse_site_config(text).devices) == 2


def test_a_fuze_limit_without_a_fuze_is_an_error_not_ignored() -> None:
    text = 'site_id = "s"\n[[devices]]\ndriver = "tasmota"\nurl = "a"\nfuze_limit_a = 16\n'
    with pytest.raises(SiteConfigError) as raised:
        parse_site_config(text)
    assert str(raised.value).startswith("site.toml: devices[0].fuze_limit_a: ")
    assert "fuze_id" in str(raised.value)


def test_the_bus_goes_under_bus_not_at_the_top() -> None:
    with pytest.raises(SiteConfigError, match=r"^site\.toml: bus_url: .*\[bus\].*EVPLUG_BUS_URL"):
        parse_site_config('site_id = "s"\nbus_url = "nats://mothership.example:4222"')


def test_the_bus_table_names_the_broker_and_credentials_beside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'site_id = "s"\n[bus]\nurl = "nats://broker.example:4222"\ncredentials = "s.creds"\n'
    )
    site = load_site_config(path)
    assert (site.bus_url, site.bus_credentials) == (
        "nats://broker.example:4222",
        tmp_path / "s.creds",
    )
    assert parse_site_config('site_id = "s"').bus_url is None


@pytest.mark.parametrize(
    ("bus", "error"),
    [
        ('url = "http://broker"', "bus.url: must be nats://host:port, not 'http://broker'"),
        ('credentials = ""', "bus.credentials: must be a non-empty string"),
        ('token = "x"', "bus.token: unknown key (known: credentials, url)"),
    ],
)
def test_a_wrong_bus_table_names_the_key(bus: str, error: str) -> None:
    with pytest.raises(SiteConfigError) as raised:
        parse_site_config(f'site_id = "s"\n[bus]\n{bus}\n')
    assert str(raised.value).startswith(f"site.toml: {error}")


NESTED = """
site_id = "garage-7"
supply_limit_a = 63

[[circuits]]
id = "east"
limit_a = 32

[[circuits]]
id = "bay-1"
limit_a = 20
parent = "east"

[[devices]]
driver = "shelly_rpc"
url = "http://192.168.1.50"
fuze_id = "bay-1"

[[devices]]
driver = "shelly_rpc"
url = "http://192.168.1.51"
fuze_id = "west"
fuze_limit_a = 16
"""


def test_circuits_nest_under_the_supply_each_after_its_parent() -> None:
    config = parse_site_config(NESTED)
    assert config.circuits() == [
        Circuit("supply", 63.0),
        Circuit("east", 32.0, "supply"),
        Circuit("west", 16.0, "supply"),  # a device's fuze the file lists nowhere else
        Circuit("bay-1", 20.0, "east"),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('parent = "east"', 'parent = "north"'), "circuits: circuit 'bay-1': parent 'north'"),
        (("supply_limit_a = 63", ""), "circuits[0].parent: there is no supply: add supply_limit"),
        (('id = "east"', 'id = "supply"'), "circuits[0].id: 'supply' is the site's supply"),
        (('id = "bay-1"', 'id = "east"'), "circuits[1].id: 'east' is also circuits[0]"),
        (
            ('fuze_id = "bay-1"', 'fuze_id = "bay-1"\nfuze_limit_a = 10'),
            "disagrees with circuits[1] (20 A): drop one",
        ),
        (("limit_a = 20\n", ""), "circuits[1].limit_a: missing"),
    ],
)
def test_a_circuit_mistake_is_one_clear_message(change: tuple[str, str], message: str) -> None:
    text = NESTED.replace(*change)
    if "there is no supply" in message:
        text = text.replace("limit_a = 32", 'limit_a = 32\nparent = "supply"')
    with pytest.raises(SiteConfigError) as caught:
        parse_site_config(text)
    assert message in str(caught.value)


def test_parents_that_loop_are_refused() -> None:
    text = NESTED.replace("limit_a = 32", 'limit_a = 32\nparent = "bay-1"')
    with pytest.raises(SiteConfigError, match="loop"):
        parse_site_config(text)
