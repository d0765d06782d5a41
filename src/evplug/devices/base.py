"""What every relay driver offers, and the errors callers can act on.

A driver talks to one physical device, which may carry several channels (a Pro 4PM has four
sockets on one circuit). Plug ids come from the hardware, never from an address, so a device
that moves to a new IP keeps its plugs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from evplug.core.actual import ActualState


class DeviceError(Exception):
    """Base of every error a driver raises."""


class DeviceUnreachable(DeviceError):
    """No answer (refused, timed out, DNS): the device is off, moved or the LAN is down."""


class DeviceAuthError(DeviceError):
    """The device wants credentials, or rejected the ones in the site config."""


class UnsupportedDevice(DeviceError):
    """Something answers, but not a relay this driver understands."""


class BadChannel(DeviceError):
    """The device has no such channel."""


class SwitchMismatch(DeviceError):
    """The relay read back a different state from the one just commanded."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    family: str  # "shelly", "tasmota", "sonoff", "sim"
    model: str
    hardware_id: str  # MAC (lowercase hex, no separators) or the device's own id
    channels: int
    address: str
    firmware: str = ""

    def plug_id(self, channel: int) -> str:
        return plug_id(self.family, self.hardware_id, channel)


def plug_id(family: str, hardware_id: str, channel: int) -> str:
    """The stable, global id of one socket, e.g. ``shelly:a8032ab12345:0``."""
    return f"{family}:{hardware_id.lower().replace(':', '')}:{channel}"


@dataclass(frozen=True, slots=True)
class ChannelReading:
    channel: int
    actual: ActualState  # ON, OFF or OVERCURRENT
    power_w: float
    voltage_v: float
    current_a: float
    power_factor: float
    energy_wh: float | None  # the device's cumulative counter, None when it has none


class Driver(Protocol):
    """One device. Every method raises a ``DeviceError`` subclass, never a bare exception."""

    async def connect(self) -> DeviceInfo: ...

    async def read(self) -> list[ChannelReading]: ...

    async def switch(self, channel: int, on: bool) -> ActualState:
        """Switch one channel, read it back and return the actual state (raise on mismatch)."""
        ...

    async def close(self) -> None: ...


OnReadings = Callable[[list[ChannelReading]], None]


@runtime_checkable
class PushDriver(Driver, Protocol):
    """A driver whose device reports changes as they happen (Shelly Gen2+ over WebSocket)."""

    def subscribe(self, on_readings: OnReadings) -> None:
        """From now on, call ``on_readings`` with the channels that changed, as soon as the
        device reports them. ``read`` keeps working and stays the periodic full check."""
        ...


@runtime_checkable
class TimedDriver(Driver, Protocol):
    """A driver whose device has an auto-off timer: a dead-man switch in the relay itself."""

    async def switch_on_for(self, channel: int, seconds: float) -> ActualState:
        """Switch one channel on (or keep it on) and have the device switch it off by itself
        ``seconds`` from now unless called again; read it back like ``switch``."""
        ...
