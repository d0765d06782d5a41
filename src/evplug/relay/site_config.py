"""One TOML file per site: who the site is and which relays it has.

```toml
site_id = "garage-7"          # letters, digits, '-' and '_' (it names the site's bus subjects)
poll_interval_s = 2           # optional, 0.2..3600; default: the relay settings' (2)
discovery = false             # optional, default off (mDNS multicasts)
discovery_interval_s = 300    # optional, 10..86400: how often to look for new relays
mia_after_failed_polls = 3    # optional, 1..1000, default 3
supply_limit_a = 63           # optional, 1..10000: the site's supply, over every circuit

[bus]                         # optional; `evplug site create` writes it
url = "nats://broker.example:4222"   # the broker the site's credentials are for
credentials = "site.creds"    # its NATS credentials file, relative to this file

[[circuits]]                  # optional: circuits under the supply or under each other
id = "east"                   # a fuze id
limit_a = 32                  # 1..10000
parent = "supply"             # optional: "supply" (the default, if a supply is given) or a circuit

[[devices]]
driver = "shelly_rpc"        # a registry name, or "auto" to probe at start-up
url = "http://192.168.1.50"
username = "admin"           # optional
password = "…"               # optional
fuze_id = "A"                # optional: devices on one fuze share its current (a multi-channel
                             # relay's channels share one by default); may be a [[circuits]] id
fuze_limit_a = 32            # optional, 1..10000: that fuze's limit in amperes (needs fuze_id)
```

A fuze not listed in ``[[circuits]]`` is under the supply, if the file gives one.

The ``[bus]`` table is where the site's provisioned broker and credentials go; the settings
(``EVPLUG_BUS_URL``, ``EVPLUG_BUS_CREDENTIALS``), when given, win over it. Every mistake is one
``SiteConfigError`` naming the file, the key and what is wrong, e.g.
``site.toml: devices[1].url: missing``; syntax errors carry tomllib's line and column.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from evplug.core.circuits import SITE_SUPPLY, Circuit, CircuitError, CircuitTree
from evplug.core.ids import check_fuze_id, check_site_id
from evplug.devices.health import DEFAULT_MIA_AFTER
from evplug.devices.http_driver import normalize_url
from evplug.devices.registry import DRIVERS
from evplug.settings import CIRCUIT_LIMIT_A, NATS_URL, POLL_INTERVAL_S

AUTO = "auto"
DEFAULT_DISCOVERY_INTERVAL_S = 300.0
DISCOVERY_INTERVAL_S = (10.0, 86_400.0)
MIA_AFTER_FAILED_POLLS = (1, 1000)
_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


class SiteConfigError(ValueError):
    def __init__(self, message: str, key: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.key, self.line = key, line


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    driver: str
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    fuze_id: str | None = None
    fuze_limit_a: float | None = None


@dataclass(frozen=True, slots=True)
class SiteConfig:
    site_id: str
    poll_interval_s: float | None = None  # None: the relay settings' poll interval
    discovery: bool = False
    discovery_interval_s: float = DEFAULT_DISCOVERY_INTERVAL_S
    mia_after_failed_polls: int = DEFAULT_MIA_AFTER
    devices: tuple[DeviceConfig, ...] = ()
    supply_limit_a: float | None = None
    # The [[circuits]] entries, ids being fuze ids.
    nested: tuple[Circuit, ...] = ()
    bus_url: str | None = None  # [bus] url
    bus_credentials: Path | None = None  # [bus] credentials, relative to the site file

    def fuze_limits(self) -> dict[str, float]:
        """Fuze id -> limit in A, for the fuzes whose limit the file gives."""
        return {c.id: c.limit_a for c in self.circuits()}

    def circuits(self) -> list[Circuit]:
        """Every circuit whose limit the file gives, each after its parent."""
        supply = None if self.supply_limit_a is None else SITE_SUPPLY
        found = [] if supply is None else [Circuit(SITE_SUPPLY, self.supply_limit_a or 0.0)]
        listed = {c.id for c in self.nested}
        found += [
            c if c.parent or supply is None else Circuit(c.id, c.limit_a, supply)
            for c in self.nested
        ]
        for d in self.devices:
            if d.fuze_id is not None and d.fuze_limit_a is not None and d.fuze_id not in listed:
                listed.add(d.fuze_id)
                found.append(Circuit(d.fuze_id, d.fuze_limit_a, supply))
        tree = CircuitTree(found)
        return sorted(found, key=lambda c: len(tree.chain(c.id)))


class _Table:
    """Typed reads from one TOML table; every error names the file and the key path."""

    def __init__(self, source: str, prefix: str, values: dict[str, Any], known: set[str]):
        self.source, self.prefix, self.values = source, prefix, values
        for key in values:
            if key not in known:
                self.fail(key, f"unknown key (known: {', '.join(sorted(known))})")

    def fail(self, key: str, problem: str) -> NoReturn:
        raise SiteConfigError(f"{self.source}: {self.prefix}{key}: {problem}", self.prefix + key)

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            self.fail(key, f"must be a non-empty string, not {value!r}")
        return None if value is None else value.strip()

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            self.fail(key, "missing")
        return value

    def number(self, key: str, bounds: tuple[float, float]) -> float | None:
        value = self.values.get(key)
        if value is None:
            return None
        low, high = bounds
        # bool is an int in Python; `poll_interval_s = true` is still a mistake.
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(key, f"must be a number {low:g}..{high:g}, not {value!r}")
        if not (math.isfinite(value) and low <= value <= high):
            self.fail(key, f"must be a number {low:g}..{high:g}, not {value!r}")
        return float(value)

    def integer(self, key: str, default: int, bounds: tuple[int, int]) -> int:
        value = self.values.get(key, default)
        low, high = bounds
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(key, f"must be a whole number {low}..{high}, not {value!r}")
        return value

    def identifier(self, key: str, check: Callable[[str], str]) -> str | None:
        value = self.text(key)
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                self.fail(key, str(exc))
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {value!r}")
        return value


_SITE_KEYS = {
    "site_id",
    "poll_interval_s",
    "discovery",
    "discovery_interval_s",
    "mia_after_failed_polls",
    "supply_limit_a",
}
_CIRCUIT_KEYS = {"id", "limit_a", "parent"}
_BUS_KEYS = {"url", "credentials"}
_DEVICE_KEYS = {"driver", "url", "username", "password", "fuze_id", "fuze_limit_a"}


def _device(source: str, index: int, values: Any) -> DeviceConfig:
    prefix = f"devices[{index}]."
    if not isinstance(values, dict):
        raise SiteConfigError(f"{source}: devices[{index}]: must be a table", prefix[:-1])
    table = _Table(source, prefix, values, _DEVICE_KEYS)
    driver = table.required_text("driver")
    known = [*DRIVERS, AUTO]
    if driver not in known:
        table.fail("driver", f"{driver!r} is not one of {', '.join(known)}")
    username, password = table.text("username"), values.get("password")
    if password is not None and not isinstance(password, str):
        table.fail("password", "must be a string")
    if username is not None and password is None:
        table.fail("password", "missing (a username is given)")
    fuze_id = table.identifier("fuze_id", check_fuze_id)
    fuze_limit_a = table.number("fuze_limit_a", CIRCUIT_LIMIT_A)
    if fuze_limit_a is not None and fuze_id is None:
        table.fail("fuze_limit_a", "a limit belongs to a fuze: add fuze_id naming the fuze")
    return DeviceConfig(
        driver=driver,
        url=table.required_text("url"),
        username=username,
        password=password,
        fuze_id=fuze_id,
        fuze_limit_a=fuze_limit_a,
    )


def _bus(source: str, values: Any) -> tuple[str | None, Path | None]:
    if not isinstance(values, dict):
        raise SiteConfigError(f"{source}: bus: must be a table ([bus])", "bus")
    table = _Table(source, "bus.", values, _BUS_KEYS)
    url = table.text("url")
    if url is not None and not NATS_URL.fullmatch(url):
        table.fail("url", f"must be nats://host:port, not {url!r}")
    credentials = table.text("credentials")
    return url, None if credentials is None else Path(credentials)


def _check_devices(source: str, devices: list[DeviceConfig]) -> None:
    urls: dict[str, int] = {}
    limits: dict[str, tuple[float, int]] = {}
    for index, device in enumerate(devices):
        # One relay under two spellings would be polled twice, its plugs on two circuits.
        address = normalize_url(device.url)
        if address in urls:
            first = urls[address]
            spelled = "" if device.url == devices[first].url else f" ({devices[first].url})"
            raise SiteConfigError(
                f"{source}: devices[{index}].url: {device.url} is also devices[{first}]{spelled}"
                " (one entry per device)",
                f"devices[{index}].url",
            )
        urls[address] = index
        if device.fuze_id is None or device.fuze_limit_a is None:
            continue
        limit, first = limits.setdefault(device.fuze_id, (device.fuze_limit_a, index))
        if limit != device.fuze_limit_a:
            raise SiteConfigError(
                f"{source}: devices[{index}].fuze_limit_a: {device.fuze_limit_a:g} A disagrees"
                f" with {limit:g} A for fuze {device.fuze_id!r} in devices[{first}]",
                f"devices[{index}].fuze_limit_a",
            )


def _circuit(source: str, index: int, values: Any) -> Circuit:
    prefix = f"circuits[{index}]."
    if not isinstance(values, dict):
        raise SiteConfigError(f"{source}: circuits[{index}]: must be a table", prefix[:-1])
    table = _Table(source, prefix, values, _CIRCUIT_KEYS)
    circuit_id = table.identifier("id", check_fuze_id)
    if circuit_id is None:
        table.fail("id", "missing")
    if circuit_id == SITE_SUPPLY:
        table.fail("id", f"{SITE_SUPPLY!r} is the site's supply: give supply_limit_a instead")
    limit_a = table.number("limit_a", CIRCUIT_LIMIT_A)
    if limit_a is None:
        table.fail("limit_a", "missing")
    return Circuit(circuit_id, limit_a, table.identifier("parent", check_fuze_id))


def _check_circuits(source: str, site: SiteConfig) -> None:
    seen: dict[str, int] = {}
    for index, circuit in enumerate(site.nested):
        if circuit.id in seen:
            first = seen[circuit.id]
            raise SiteConfigError(
                f"{source}: circuits[{index}].id: {circuit.id!r} is also circuits[{first}]"
                " (one entry per circuit)",
                f"circuits[{index}].id",
            )
        seen[circuit.id] = index
        if circuit.parent == SITE_SUPPLY and site.supply_limit_a is None:
            raise SiteConfigError(
                f"{source}: circuits[{index}].parent: there is no supply: add supply_limit_a",
                f"circuits[{index}].parent",
            )
    for index, device in enumerate(site.devices):
        if device.fuze_id in seen and device.fuze_limit_a is not None:
            limit = site.nested[seen[device.fuze_id]].limit_a
            if limit != device.fuze_limit_a:
                raise SiteConfigError(
                    f"{source}: devices[{index}].fuze_limit_a: {device.fuze_limit_a:g} A disagrees"
                    f" with circuits[{seen[device.fuze_id]}] ({limit:g} A): drop one",
                    f"devices[{index}].fuze_limit_a",
                )
    try:
        site.circuits()
    except CircuitError as exc:
        raise SiteConfigError(f"{source}: circuits: {exc}", "circuits") from None


def parse_site_config(text: str, source: str = "site.toml") -> SiteConfig:
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = _AT_LINE.search(message)
        if at is None:
            raise SiteConfigError(f"{source}: {message}") from None
        line = int(at[1])
        where = f"line {line}, column {at[2]}"
        raise SiteConfigError(f"{source}: {where}: {message[: at.start()]}", line=line) from None
    if "bus_url" in values:
        raise SiteConfigError(
            f"{source}: bus_url: not a site key: write url under [bus], or set EVPLUG_BUS_URL",
            "bus_url",
        )
    site = _Table(source, "", values, _SITE_KEYS | {"devices", "circuits", "bus"})
    bus_url, bus_credentials = _bus(source, values.get("bus", {}))
    raw_devices = values.get("devices", [])
    if not isinstance(raw_devices, list):
        site.fail("devices", "must be an array of tables ([[devices]])")
    devices = [_device(source, i, raw) for i, raw in enumerate(raw_devices)]
    _check_devices(source, devices)
    raw_circuits = values.get("circuits", [])
    if not isinstance(raw_circuits, list):
        site.fail("circuits", "must be an array of tables ([[circuits]])")
    nested = tuple(_circuit(source, i, raw) for i, raw in enumerate(raw_circuits))
    site_id = site.identifier("site_id", check_site_id)
    if site_id is None:
        site.fail("site_id", "missing")
    discovery_interval_s = site.number("discovery_interval_s", DISCOVERY_INTERVAL_S)
    config = SiteConfig(
        site_id=site_id,
        poll_interval_s=site.number("poll_interval_s", POLL_INTERVAL_S),
        discovery=site.flag("discovery", False),
        discovery_interval_s=discovery_interval_s or DEFAULT_DISCOVERY_INTERVAL_S,
        mia_after_failed_polls=site.integer(
            "mia_after_failed_polls", DEFAULT_MIA_AFTER, MIA_AFTER_FAILED_POLLS
        ),
        devices=tuple(devices),
        supply_limit_a=site.number("supply_limit_a", CIRCUIT_LIMIT_A),
        nested=nested,
        bus_url=bus_url,
        bus_credentials=bus_credentials,
    )
    _check_circuits(source, config)
    return config


def load_site_config(path: str | os.PathLike[str]) -> SiteConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteConfigError(f"{path}: cannot read: {exc}") from None
    site = parse_site_config(text, source=str(path))
    if site.bus_credentials is None:
        return site
    return replace(site, bus_credentials=Path(path).parent / site.bus_credentials)
