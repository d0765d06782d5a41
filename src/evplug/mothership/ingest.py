"""The hot path: one ReadingChunk in, telemetry rows and state-machine effects out.

Kept synchronous and allocation-light: a site sends a chunk every two seconds and at scale
that is hundreds of thousands of readings a second through this loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from evplug.contracts import evplug_pb2 as pb
from evplug.contracts.wire import unpack
from evplug.core.actual import ActualState
from evplug.core.plug import Effect, Plug
from evplug.core.readings import InvalidReading
from evplug.store.telemetry import Row

log = structlog.get_logger(__name__)

# The core's members carry the contract's numbers (a test holds them equal).
_ACTUAL_BY_NUMBER = {int(member): member for member in ActualState}


def actual_state(number: int) -> ActualState:
    """The member for an ActualState number; numbers from a newer contract read as UNKNOWN."""
    return _ACTUAL_BY_NUMBER.get(number, ActualState.UNKNOWN)


# Unknown plug ids are logged once each, up to this many; past it they are only counted, so a
# sender inventing ids cannot grow memory without bound.
MAX_WARNED_PLUGS = 10_000


class ForeignChunk(ValueError):
    """A chunk whose site id does not match the subject it came on."""


@dataclass(slots=True)
class IngestStats:
    chunks: int = 0
    readings: int = 0
    rejected_chunks: int = 0
    unknown_plug_readings: int = 0
    future_readings: int = 0
    invalid_readings: int = 0


def process_chunk(
    data: bytes,
    subject_site: str,
    site_plugs: dict[str, dict[str, Plug]],
    stats: IngestStats,
    warned: set[str],
    not_after_ms: int,
) -> tuple[list[Row], list[Effect]]:
    """Decode, route each reading to its plug's state machine, and build the telemetry rows.

    Readings for plugs this site never announced are dropped, counted and logged once per plug.
    So are readings stamped after ``not_after_ms``: a relay clock far ahead would otherwise make
    its plug ignore every true reading (credit checks, OFF confirmations) until that time. So are
    readings the plug refuses as not physical (NaN, infinite, out of bounds), logged once per
    chunk with the first reason.
    """
    chunk = unpack(data, pb.ReadingChunk)
    if chunk.site_id != subject_site:
        raise ForeignChunk(
            f"chunk claims site {chunk.site_id!r} on the subject of {subject_site!r}"
        )
    plugs = site_plugs.get(subject_site) or {}
    by_number = _ACTUAL_BY_NUMBER
    unknown_actual = ActualState.UNKNOWN
    rows: list[Row] = []
    effects: list[Effect] = []
    unknown = future = invalid = 0
    invalid_reason = ""
    for r in chunk.readings:
        plug_id = r.plug_id
        plug = plugs.get(plug_id)
        if plug is None:
            unknown += 1
            if plug_id not in warned and len(warned) < MAX_WARNED_PLUGS:
                warned.add(plug_id)
                log.warning("ingest.unknown_plug", site=subject_site, plug_id=plug_id)
            continue
        ts = r.timestamp_ms
        if ts > not_after_ms:
            future += 1
            continue
        actual = r.actual_state
        power = r.active_power_w
        energy = r.energy_wh if r.HasField("energy_wh") else None
        try:
            out = plug.reading(ts, by_number.get(actual, unknown_actual), power, energy)
        except InvalidReading as exc:
            invalid += 1
            invalid_reason = invalid_reason or str(exc)
            continue
        rows.append((plug_id, ts, actual, r.current_a, r.voltage_v, r.power_factor, power, energy))
        if out:
            effects.extend(out)
    stats.chunks += 1
    stats.readings += len(rows)
    stats.unknown_plug_readings += unknown
    if future:
        stats.future_readings += future
        log.warning(
            "ingest.readings_from_the_future",
            site=subject_site,
            count=future,
            fix="the site's clock is ahead: check NTP on the relay manager",
        )
    if invalid:
        stats.invalid_readings += invalid
        log.warning(
            "ingest.invalid_readings", site=subject_site, count=invalid, reason=invalid_reason
        )
    return rows, effects
