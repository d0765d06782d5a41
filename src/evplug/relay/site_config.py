"""One TOML file per site: who the site is, where its bus is, and which relays it has.

```toml
site_id = "garage-7"
bus_url = "nats://mothership.example:4222"   # optional; absent = the embedded bus
poll_interval_s = 2                          # optional, default 2
discovery = false                            # optional, default off (mDNS multicasts)
discovery_interval_s = 300                   # optional: how often to look for new relays
mia_after_failed_polls = 3                   # optional, default 3

[[devices]]
driver = "shelly_rpc"        # a registry name, or "auto" to probe at start-up
url = "http://192.168.1.50"
username = "admin"           # optional
password = "…"               # optional
fuze_id = "A"                # optional: devices on one fuze share its current
fuze_limit_a = 32            # optional: that fuze's limit in amperes
```

Every mistake is one ``SiteConfigError`` naming the file, the key and what is wrong, e.g.
``site.toml: devices[1].url: missing``; syntax errors carry tomllib's line and column.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from evplug.devices.health import DEFAULT_MIA_AFTER
from evplug.devices.registry import DRIVERS

AUTO = "auto"
DEFAULT_POLL_INTERVAL_S = 2.0
DEFAULT_DISCOVERY_INTERVAL_S = 300.0
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
    bus_url: str | None = None
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    discovery: bool = False
    discovery_interval_s: float = DEFAULT_DISCOVERY_INTERVAL_S
    mia_after_failed_polls: int = DEFAULT_MIA_AFTER
    devices: tuple[DeviceConfig, ...] = ()

    def fuze_limits(self) -> dict[str, float]:
        """Fuze id -> limit in A, for the fuzes whose limit the file gives."""
        return {
            d.fuze_id: d.fuze_limit_a
            for d in self.devices
            if d.fuze_id is not None and d.fuze_limit_a is not None
        }


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

    def number(self, key: str) -> float | None:
        value = self.values.get(key)
        if value is None:
            return None
        # bool is an int in Python; `poll_interval_s = true` is still a mistake.
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(key, f"must be a number, not {value!r}")
        if value <= 0:
            self.fail(key, f"must be positive, not {value!r}")
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self.values.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.fail(key, f"must be a whole number of at least 1, not {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {value!r}")
        return value


_SITE_KEYS = {
    "site_id",
    "bus_url",
    "poll_interval_s",
    "discovery",
    "discovery_interval_s",
    "mia_after_failed_polls",
}
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
    return DeviceConfig(
        driver=driver,
        url=table.required_text("url"),
        username=username,
        password=password,
        fuze_id=table.text("fuze_id"),
        fuze_limit_a=table.number("fuze_limit_a"),
    )


def _check_devices(source: str, devices: list[DeviceConfig]) -> None:
    urls: dict[str, int] = {}
    limits: dict[str, tuple[float, int]] = {}
    for index, device in enumerate(devices):
        if device.url in urls:
            raise SiteConfigError(
                f"{source}: devices[{index}].url: {device.url} is also devices[{urls[device.url]}]"
                " (one entry per device)",
                f"devices[{index}].url",
            )
        urls[device.url] = index
        if device.fuze_id is None or device.fuze_limit_a is None:
            continue
        limit, first = limits.setdefault(device.fuze_id, (device.fuze_limit_a, index))
        if limit != device.fuze_limit_a:
            raise SiteConfigError(
                f"{source}: devices[{index}].fuze_limit_a: {device.fuze_limit_a:g} A disagrees"
                f" with {limit:g} A for fuze {device.fuze_id!r} in devices[{first}]",
                f"devices[{index}].fuze_limit_a",
            )


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
    site = _Table(source, "", values, _SITE_KEYS | {"devices"})
    raw_devices = values.get("devices", [])
    if not isinstance(raw_devices, list):
        site.fail("devices", "must be an array of tables ([[devices]])")
    devices = [_device(source, i, raw) for i, raw in enumerate(raw_devices)]
    _check_devices(source, devices)
    return SiteConfig(
        site_id=site.required_text("site_id"),
        bus_url=site.text("bus_url"),
        poll_interval_s=site.number("poll_interval_s") or DEFAULT_POLL_INTERVAL_S,
        discovery=site.flag("discovery", False),
        discovery_interval_s=site.number("discovery_interval_s") or DEFAULT_DISCOVERY_INTERVAL_S,
        mia_after_failed_polls=site.integer("mia_after_failed_polls", DEFAULT_MIA_AFTER),
        devices=tuple(devices),
    )


def load_site_config(path: str | os.PathLike[str]) -> SiteConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteConfigError(f"{path}: cannot read: {exc}") from None
    return parse_site_config(text, source=str(path))
