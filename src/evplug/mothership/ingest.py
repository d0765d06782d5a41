"""The hot path: one ReadingChunk in, telemetry rows and state-machine effects out.

Kept synchronous and allocation-light: a site sends a chunk every two seconds and at scale
that is hundreds of thousands of readings a second through this loop.
"""

from __future__ import annotations

import structlog

from evplug import metrics
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts.wire import MAX_READINGS_PER_CHUNK, WireError, unpack
from evplug.core.actual import ActualState
from evplug.core.edge_safety import StopReason
from evplug.core.plug import Effect, Plug
from evplug.core.readings import InvalidReading
from evplug.store.telemetry import Row

log = structlog.get_logger(__name__)

# The core's members carry the contract's numbers (a test holds them equal).
_ACTUAL_BY_NUMBER = {int(member): member for member in ActualState}
_EDGE_STOPS = {int(member): member for member in StopReason}
_MIA = int(ActualState.MIA)


def actual_state(number: int) -> ActualState:
    """The member for an ActualState number; numbers from a newer contract read as UNKNOWN."""
    return _ACTUAL_BY_NUMBER.get(number, ActualState.UNKNOWN)


# Unknown plug ids are logged once each, up to this many; past it they are only counted, so a
# sender inventing ids cannot grow memory without bound.
MAX_WARNED_PLUGS = 10_000


class ForeignChunk(ValueError):
    """A chunk whose site id does not match the subject it came on."""


class OversizeChunk(WireError):
    """A chunk with more readings than the wire contract allows; refused whole.

    A ``WireError``: like bytes over the byte caps, it breaks the contract, so it is acked and
    dropped rather than retried (it would never fit the telemetry sink and would pin its stream).
    """


_INGESTED = metrics.READINGS_INGESTED
_UNKNOWN_PLUG = metrics.READINGS_REJECTED.labels(reason="unknown_plug")
_FUTURE = metrics.READINGS_REJECTED.labels(reason="future")
_IN_OVERSIZE_CHUNK = metrics.READINGS_REJECTED.labels(reason="oversize_chunk")
_INVALID = metrics.READINGS_REJECTED.labels(reason="invalid")


def count_rejected_chunk(error: Exception) -> None:
    """Count a chunk refused whole, by why."""
    if isinstance(error, OversizeChunk):
        reason = "oversize"
    elif isinstance(error, ForeignChunk):
        reason = "foreign_site"
    else:
        reason = "invalid"
    metrics.CHUNKS_REJECTED.labels(reason=reason).inc()


def process_chunk(
    data: bytes,
    subject_site: str,
    site_plugs: dict[str, dict[str, Plug]],
    warned: set[str],
    not_after_ms: int,
    current_a: dict[str, float],
    redelivered: bool = False,
) -> tuple[list[Row], list[Effect]]:
    """Decode, route each reading to its plug's state machine, and build the telemetry rows.

    ``current_a`` takes the current of each plug's newest reading, for load management (a
    reading the plug took as its newest and that is not MIA: no news is not zero amps).
    Readings for plugs this site never announced are dropped, counted and logged once per plug.
    So are readings stamped after ``not_after_ms``: a relay clock far ahead would otherwise make
    its plug ignore every true reading (credit checks, OFF confirmations) until that time. So are
    readings the plug refuses as not physical (NaN, infinite, out of bounds), logged once per
    chunk with the first reason. A chunk over ``MAX_READINGS_PER_CHUNK`` is refused whole
    (``OversizeChunk``), none of its readings applied. ``redelivered``: the bus delivers the
    chunk again, so its readings behind their plug's newest are repeats (``Plug.reading``).
    """
    chunk = unpack(data, pb.ReadingChunk)
    if chunk.site_id != subject_site:
        raise ForeignChunk(
            f"chunk claims site {chunk.site_id!r} on the subject of {subject_site!r}"
        )
    if len(chunk.readings) > MAX_READINGS_PER_CHUNK:
        _IN_OVERSIZE_CHUNK.inc(len(chunk.readings))
        raise OversizeChunk(
            f"chunk {chunk.seq} of site {subject_site!r} has {len(chunk.readings)} readings,"
            f" over the cap of {MAX_READINGS_PER_CHUNK}: upgrade that site's relay manager,"
            " which splits its polls into chunks under the cap"
        )
    plugs = site_plugs.get(subject_site) or {}
    by_number = _ACTUAL_BY_NUMBER
    unknown_actual = ActualState.UNKNOWN
    rows: list[Row] = []
    append = rows.append
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
        # An unset counter reads as 0.0: only then is its presence worth asking.
        energy = r.energy_wh
        if not energy and not r.HasField("energy_wh"):
            energy = None
        stop = r.edge_stop
        try:
            out = plug.reading(
                ts,
                by_number.get(actual, unknown_actual),
                power,
                energy,
                _EDGE_STOPS.get(stop) if stop else None,
                redelivered,
            )
        except InvalidReading as exc:
            invalid += 1
            invalid_reason = invalid_reason or str(exc)
            continue
        current = r.current_a
        append((plug_id, ts, actual, current, r.voltage_v, r.power_factor, power, energy))
        if ts == plug.last_reading_ms and actual != _MIA:
            current_a[plug_id] = current
        if out:
            effects.extend(out)
    _INGESTED.inc(len(rows))
    if unknown:
        _UNKNOWN_PLUG.inc(unknown)
    if future:
        _FUTURE.inc(future)
        log.warning(
            "ingest.readings_from_the_future",
            site=subject_site,
            count=future,
            fix="the site's clock is ahead: check NTP on the relay manager",
        )
    if invalid:
        _INVALID.inc(invalid)
        log.warning(
            "ingest.invalid_readings", site=subject_site, count=invalid, reason=invalid_reason
        )
    return rows, effects
