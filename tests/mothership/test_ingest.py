"""The ingest hot path: wire numbers to the core's ActualState, impossible readings counted."""

from __future__ import annotations

import math

from structlog.testing import capture_logs

from evplug.contracts import evplug_pb2 as pb
from evplug.contracts.wire import pack
from evplug.core.actual import ActualState
from evplug.core.plug import Plug
from evplug.mothership.ingest import IngestStats, actual_state, process_chunk

SITE = "site-1"
START = 1_700_000_000_000


def chunk(*readings: dict[str, object]) -> bytes:
    message = pb.ReadingChunk(site_id=SITE, seq=1)
    for fields in readings:
        message.readings.add(plug_id="p", **fields)
    return pack(message)


def test_wire_numbers_map_to_members_and_unknown_numbers_to_unknown() -> None:
    assert [actual_state(int(m)) for m in ActualState] == list(ActualState)
    assert actual_state(99) is ActualState.UNKNOWN
    assert actual_state(-1) is ActualState.UNKNOWN


def test_impossible_readings_are_dropped_counted_and_logged_once_per_chunk() -> None:
    plug = Plug("p", "f")
    stats = IngestStats()
    data = chunk(
        {"timestamp_ms": START, "actual_state": pb.ACTUAL_STATE_ON, "active_power_w": 100.0},
        {"timestamp_ms": START + 1, "active_power_w": math.nan},
        {"timestamp_ms": START + 2, "active_power_w": 5.0, "energy_wh": math.inf},
        {"timestamp_ms": START + 3, "actual_state": 9, "active_power_w": 7.0, "energy_wh": 2.0},
    )
    with capture_logs() as logs:
        rows, _ = process_chunk(data, SITE, {SITE: {"p": plug}}, stats, set(), START + 10)
    assert [row[1] for row in rows] == [START, START + 3]
    assert (stats.readings, stats.invalid_readings) == (2, 2)
    [logged] = [e for e in logs if e["event"] == "ingest.invalid_readings"]
    assert logged["count"] == 2
    assert "power nan W is not a finite number" in logged["reason"]
    # The plug took the good readings; a number from a newer contract reads as UNKNOWN.
    assert (plug.last_reading_ms, plug.actual, plug.power_w) == (
        START + 3,
        ActualState.UNKNOWN,
        7.0,
    )
