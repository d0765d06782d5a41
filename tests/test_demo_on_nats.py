"""The whole demo through a real broker: every message between the parts crosses nats-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from evplug.bus.broker import Broker
from evplug.demo import DemoOptions, smoke
from evplug.settings import Settings
from tests.bus.nats_state import stored_messages, wipe

pytestmark = pytest.mark.integration


async def test_the_smoke_session_runs_through_the_broker_to_a_bill(
    tmp_path: Path, nats_broker: Broker
) -> None:
    await wipe(nats_broker.url)
    settings = Settings(data_dir=tmp_path, bus_url=nats_broker.url)
    options = DemoOptions(plugs=2, speed=300.0, car_need_wh=400.0)
    result = await smoke(settings, options, timeout_s=30)
    assert result["states"][-1] == "ACCOUNT_NULL" and "CHARGING" in result["states"]
    assert result["kwh"] == pytest.approx(0.4, abs=0.02)
    assert result["balance_after_cents"] == result["balance_before_cents"] - result["cents"] > 0
    stored = await stored_messages(nats_broker.url)
    # Announce and its ack, the Enable and Disable commands with their responses, the readings.
    assert stored["ANNOUNCE"] >= 1 and stored["ANNOUNCE_ACK"] >= 1
    assert stored["COMMANDS"] >= 2 and stored["RESPONSES"] >= 2
    assert stored["TELEMETRY"] > 10
