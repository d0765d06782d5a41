"""The simulated car load: believable numbers, monotonic counter."""

from __future__ import annotations

import pytest

from evplug.devices.car import Car, Socket


def test_a_car_charges_at_about_ten_amps_then_tapers_then_trickles() -> None:
    socket = Socket(car=Car(need_wh=1000))
    socket.switch(True, 0)
    socket.advance(1000)
    assert socket.current_a == pytest.approx(10.0)
    assert 2300 < socket.power_w < 2450
    powers = []
    counter = []
    for t in range(2_000, 3_600_000, 2_000):
        socket.advance(t)
        powers.append(socket.power_w)
        counter.append(socket.energy_wh)
    assert counter == sorted(counter)
    assert socket.car is not None and socket.car.full
    assert 1.0 < powers[-1] < 10.0  # a trickle once full
    tapering = [p for p in powers if 10 < p < 2000]
    assert tapering == sorted(tapering, reverse=True) and tapering


def test_a_long_interval_fills_the_car_no_further_than_it_needs() -> None:
    car = Car(need_wh=400)
    socket = Socket(car=car)
    socket.switch(True, 0)
    socket.advance(500_000)  # polled late: over 300 Wh at the last interval's 2.4 kW
    socket.advance(1_000_000)  # the same again, with a tenth of it left to fill
    assert car.full and car.delivered_wh == pytest.approx(400)
    assert socket.energy_wh == car.delivered_wh  # the counter counts what the car took
    socket.advance(1_060_000)
    assert 400 < socket.energy_wh < 400.1  # then a trickle


def test_no_car_or_relay_off_means_no_power() -> None:
    empty = Socket(car=None)
    empty.switch(True, 0)
    empty.advance(10_000)
    assert empty.power_w == 0.0 and empty.energy_wh == 0.0
    off = Socket(car=Car())
    off.advance(10_000)
    assert off.power_w == 0.0


def test_a_reboot_resets_the_counter_and_the_relay() -> None:
    socket = Socket(car=Car())
    socket.switch(True, 0)
    socket.advance(60_000)
    socket.advance(120_000)
    assert socket.energy_wh > 0
    socket.reboot(180_000)
    assert socket.energy_wh == 0.0 and not socket.relay_on
