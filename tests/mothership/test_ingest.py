"""The ingest hot path: wire numbers to the core's ActualState, impossible readings counted,
a chunk over the readings cap refused whole so it can never pin its stream."""

from __future__ import annotations

import math

import pytest
from structlog.testing import capture_logs

from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import MAX_READINGS_PER_CHUNK, pack
from evplug.core.actual import ActualState
from evplug.core.plug import Plug, Settings
from evplug.demo import DEMO_SITE
from evplug.metrics import value
from evplug.mothership.ingest import OversizeChunk, actual_state, process_chunk
from tests.conftest import wait_for
from tests.mothership.conftest import MakeSite
from tests.mothership.harness import FakeMessage

SITE, PLUG = "site-1", "sim:aa01:0"
NOW_MS = 1_700_000_000_000


def chunk_of(n: int, site: str, plug_id: str, start_ms: int) -> bytes:
    chunk = pb.ReadingChunk(site_id=site, seq=1)
    for i in range(n):
        chunk.readings.add(
            plug_id=plug_id, timestamp_ms=start_ms + i, actual_state=pb.ACTUAL_STATE_OFF
        )
    return pack(chunk)


def test_a_chunk_at_the_cap_is_ingested_and_one_past_it_is_refused_whole() -> None:
    plug = Plug(PLUG, "main", Settings())
    site_plugs = {SITE: {PLUG: plug}}
    at_cap = chunk_of(MAX_READINGS_PER_CHUNK, SITE, PLUG, NOW_MS - 60_000)
    rows, _ = process_chunk(at_cap, SITE, site_plugs, set(), not_after_ms=NOW_MS, current_a={})
    assert len(rows) == MAX_READINGS_PER_CHUNK
    seen_ms = plug.last_reading_ms

    before = value("evplug_readings_rejected_total", reason="oversize_chunk")
    over = chunk_of(MAX_READINGS_PER_CHUNK + 1, SITE, PLUG, NOW_MS - 1_000)
    with pytest.raises(OversizeChunk, match="upgrade that site's relay manager"):
        process_chunk(over, SITE, site_plugs, set(), not_after_ms=NOW_MS, current_a={})
    assert plug.last_reading_ms == seen_ms  # none of its readings reached the plug
    rejected = value("evplug_readings_rejected_total", reason="oversize_chunk")
    assert rejected == before + MAX_READINGS_PER_CHUNK + 1


@pytest.mark.integration
async def test_a_chunk_too_big_for_the_sink_is_acked_and_counted_not_retried(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    # More readings than the sink can buffer, yet within the wire's byte caps.
    n = system.sink.max_buffered_rows + 50_000
    data = chunk_of(n, DEMO_SITE, plug_id, system.clock.now_ms() - n)
    before = value("evplug_chunks_rejected_total", reason="oversize")
    written = value("evplug_telemetry_rows_written_total")
    await system.bus.publish(subjects.for_site(subjects.TELEMETRY, DEMO_SITE), data)
    await wait_for(lambda: value("evplug_chunks_rejected_total", reason="oversize") == before + 1)
    # Acked, so it does not hold the stream; the relay's own chunks still go through.
    await wait_for(lambda: system.bus.pending_count("mothership-telemetry") == 0, timeout_s=5)
    await wait_for(lambda: value("evplug_telemetry_rows_written_total") > written)
    assert value("evplug_telemetry_rows_written_total") < written + n


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
    start = NOW_MS
    data = chunk(
        {"timestamp_ms": start, "actual_state": pb.ACTUAL_STATE_ON, "active_power_w": 100.0},
        {"timestamp_ms": start + 1, "active_power_w": math.nan},
        {"timestamp_ms": start + 2, "active_power_w": 5.0, "energy_wh": math.inf},
        {"timestamp_ms": start + 3, "actual_state": 9, "active_power_w": 7.0, "energy_wh": 2.0},
    )
    invalid = value("evplug_readings_rejected_total", reason="invalid")
    with capture_logs() as logs:
        rows, _ = process_chunk(data, SITE, {SITE: {"p": plug}}, set(), start + 10, {})
    assert [row[1] for row in rows] == [start, start + 3]
    assert value("evplug_readings_rejected_total", reason="invalid") == invalid + 2
    [logged] = [e for e in logs if e["event"] == "ingest.invalid_readings"]
    assert logged["count"] == 2
    assert "power nan W is not a finite number" in logged["reason"]
    # The plug took the good readings; a number from a newer contract reads as UNKNOWN.
    assert (plug.last_reading_ms, plug.actual, plug.power_w) == (
        start + 3,
        ActualState.UNKNOWN,
        7.0,
    )


async def test_load_management_keeps_the_current_of_the_newest_reading_that_measured_one(
    make_site: MakeSite,
) -> None:
    """However the readings were chunked: a MIA reading measures nothing, a late one is old."""
    site = await make_site(plugs=1)
    [plug_id] = site.plug_ids
    now = site.clock.now_ms()

    def reading(at_ms: int, state: int, current_a: float) -> pb.Reading:
        return pb.Reading(
            plug_id=plug_id, timestamp_ms=at_ms, actual_state=state, current_a=current_a
        )

    async def send(*readings: pb.Reading) -> None:
        chunk = pb.ReadingChunk(site_id=SITE, seq=1, readings=readings)
        message = FakeMessage(subjects.for_site(subjects.TELEMETRY, SITE), pack(chunk))
        await site.ms.handlers.on_telemetry(message)

    await send(reading(now + 1, pb.ACTUAL_STATE_ON, 5.0), reading(now + 2, pb.ACTUAL_STATE_MIA, 0))
    assert site.ms.registry.current_a[plug_id] == 5.0  # as if they had come in two chunks
    await send(reading(now + 9, pb.ACTUAL_STATE_OFF, 0.5), reading(now + 4, pb.ACTUAL_STATE_ON, 9))
    assert site.ms.registry.current_a[plug_id] == 0.5  # the late reading is not the newest
