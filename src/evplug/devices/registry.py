"""Relay families by name, and ``probe``: which family answers at a URL.

Adding a family = one driver module registered here + one emulator + its recorded payloads.
"""

from __future__ import annotations

from evplug.devices.base import (
    ChannelReading,
    DeviceAuthError,
    DeviceError,
    DeviceInfo,
    DeviceUnreachable,
    UnsupportedDevice,
)
from evplug.devices.http_driver import DEFAULT_TIMEOUT_S, HttpDriver, normalize_url
from evplug.devices.shelly_gen1 import ShellyGen1Driver
from evplug.devices.shelly_rpc import ShellyRpcDriver
from evplug.devices.sonoff_diy import SonoffDiyDriver
from evplug.devices.tasmota import TasmotaDriver

# Probe order matters: Gen2+ devices also answer the Gen1-style /shelly, so RPC goes first.
DRIVERS: dict[str, type[HttpDriver]] = {
    driver.name: driver
    for driver in (ShellyRpcDriver, ShellyGen1Driver, TasmotaDriver, SonoffDiyDriver)
}


def create_driver(
    name: str,
    url: str,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> HttpDriver:
    try:
        driver = DRIVERS[name]
    except KeyError:
        raise UnsupportedDevice(
            f"no driver {name!r}; known: {', '.join(sorted(DRIVERS))}"
        ) from None
    return driver(url, username, password, timeout_s)


async def find_driver(
    url: str,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[HttpDriver, DeviceInfo]:
    """The first family whose ``connect`` succeeds at ``url``, connected (close it when done).

    A family that answers but refuses the credentials ends the search (``DeviceAuthError``).
    An address that does not answer at all is not asked again by the other families (a Sonoff
    without an explicit port is still asked on 8081). When nothing fits, the error names every
    family and what each one saw: ``DeviceUnreachable`` if nothing answered, else
    ``UnsupportedDevice``.
    """
    tried: list[str] = []
    silent: set[str] = set()
    answered = False
    for name, family in DRIVERS.items():
        driver = family(url, username, password, timeout_s)
        if driver.url in silent:
            tried.append(f"{name}: {family.tried}: not asked, {driver.url} does not answer")
            continue
        try:
            return driver, await driver.connect()
        except DeviceError as exc:
            await driver.close()
            if isinstance(exc, DeviceAuthError):
                raise DeviceAuthError(f"{exc} ({family.tried} answered)") from exc
            if not isinstance(exc, DeviceUnreachable | UnsupportedDevice):
                raise
            if isinstance(exc, DeviceUnreachable):
                silent.add(driver.url)
            else:
                answered = True
            tried.append(f"{name}: {family.tried}: {exc}")
    message = f"no supported relay at {normalize_url(url)}; tried " + "; ".join(tried)
    raise (UnsupportedDevice if answered else DeviceUnreachable)(message)


async def probe(
    url: str,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[DeviceInfo, list[ChannelReading]]:
    """Identify the device at ``url`` and take one reading (for commissioning and the CLI)."""
    driver, info = await find_driver(url, username, password, timeout_s)
    try:
        return info, await driver.read()
    finally:
        await driver.close()
