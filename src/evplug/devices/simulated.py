"""Simulated plugs for the demo and tests: a ``Driver`` whose channels are ``car.Socket``s."""

from __future__ import annotations

from evplug.clock import Clock
from evplug.devices.base import ActualState, BadChannel, ChannelReading, DeviceInfo
from evplug.devices.car import Car, Socket


class SimulatedDevice:
    """A multi-channel relay in memory. Every channel has a car plugged in unless told not to."""

    def __init__(
        self,
        hardware_id: str,
        clock: Clock,
        channels: int = 1,
        car_need_wh: float = 8_000.0,
        cars_plugged_in: bool = True,
    ) -> None:
        self.clock = clock
        self.sockets = [
            Socket(car=Car(need_wh=car_need_wh) if cars_plugged_in else None)
            for _ in range(channels)
        ]
        self.info = DeviceInfo("sim", "simulated-plug", hardware_id, channels, "memory")

    async def connect(self) -> DeviceInfo:
        return self.info

    async def read(self) -> list[ChannelReading]:
        now = self.clock.now_ms()
        readings = []
        for channel, socket in enumerate(self.sockets):
            socket.advance(now)
            readings.append(
                ChannelReading(
                    channel=channel,
                    actual=ActualState.ON if socket.relay_on else ActualState.OFF,
                    power_w=socket.power_w,
                    voltage_v=socket.voltage_v,
                    current_a=socket.current_a,
                    power_factor=socket.power_factor,
                    energy_wh=socket.energy_wh,
                )
            )
        return readings

    async def switch(self, channel: int, on: bool) -> ActualState:
        if not 0 <= channel < len(self.sockets):
            raise BadChannel(f"{self.info.hardware_id} has no channel {channel}")
        self.sockets[channel].switch(on, self.clock.now_ms())
        return ActualState.ON if self.sockets[channel].relay_on else ActualState.OFF

    async def close(self) -> None:
        return None
