"""Every Prometheus metric of evplug, defined once, in one registry of its own.

Not prometheus_client's global registry: what a library registers there never shows up on
evplug's /metrics, and evplug's names cannot clash with it. Counters are process-wide (one per
process, as Prometheus scrapes them), so tests read how much one moved, never its absolute value.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)


def _counter(name: str, documentation: str, *labels: str) -> Counter:
    return Counter(name, documentation, labels, namespace="evplug", registry=REGISTRY)


# -- ingest (mothership) --------------------------------------------------------------------

READINGS_INGESTED = _counter(
    "readings_ingested", "Readings routed to their plug and queued for the telemetry store."
)
READINGS_REJECTED = _counter(
    "readings_rejected",
    "Readings dropped at ingest, by reason: unknown_plug (never announced), future (stamped"
    " past the allowed clock skew), oversize_chunk (in a chunk over the readings cap).",
    "reason",
)
CHUNKS_REJECTED = _counter(
    "chunks_rejected",
    "Telemetry chunks refused whole (and acked), by reason: invalid (not a gzipped"
    " ReadingChunk within the byte caps), foreign_site (its site is not its subject's),"
    " oversize (more readings than MAX_READINGS_PER_CHUNK).",
    "reason",
)

MESSAGES_REJECTED = _counter(
    "messages_rejected",
    "Bus messages that could not be read (malformed, oversized, a gzip bomb), dropped and acked,"
    " by the message they should have been: telemetry chunks are counted in chunks_rejected.",
    "message",
)

# -- plugs, effects, sessions (mothership) --------------------------------------------------

TRANSITIONS = _counter(
    "plug_transitions", "Plug state machine transitions, by the state entered.", "to_state"
)
EFFECTS_PARKED = _counter(
    "effects_parked", "Times a plug's effects could not be applied and were parked for retry."
)
EFFECTS_STUCK = _counter(
    "effects_stuck",
    "Times a plug's effects failed so often in a row that an operator must look (they are kept"
    " and still retried, with backoff).",
)
METER_ANOMALIES = _counter(
    "meter_anomalies",
    "Energy counter readings the meter could not take at face value, by kind.",
    "kind",
)
SESSIONS_CLOSED = _counter(
    "sessions_closed", "Charging sessions closed and billed, by end reason.", "reason"
)
DEBT_CENTS = _counter(
    "debt_cents",
    "Cents billed beyond what the driver's balance held at a session's close (owed; alerted).",
)

# -- bus ------------------------------------------------------------------------------------

BUS_DROPPED = _counter(
    "bus_messages_dropped",
    "Messages a stream dropped at its size limit before everyone they were for acked them.",
    "stream",
)
BUS_DUPLICATES = _counter(
    "bus_duplicates",
    "Publishes ignored because a recent message had the same message id.",
    "stream",
)
BUS_REDELIVERIES = _counter(
    "bus_redeliveries",
    "Messages handed to a durable consumer again (nak, ack timeout, consumer restart).",
    "durable",
)

# -- relay manager --------------------------------------------------------------------------

RELAY_POLLS = _counter("relay_polls", "Poll rounds over every relay of the site.")
RELAY_POLL_FAILURES = _counter(
    "relay_poll_failures",
    "Failed device reads, by kind: read_error (the device did not answer properly),"
    " driver_bug (an unexpected exception); went_mia counts devices that went missing.",
    "kind",
)
RELAY_PUBLISH_FAILURES = _counter(
    "relay_publish_failures", "Telemetry and command answers the bus refused to take."
)
RELAY_OUTBOX_PENDING = Gauge(
    "relay_outbox_pending",
    "Chunks in the relay manager's outbox: written to disk, not yet acked by the broker.",
    namespace="evplug",
    registry=REGISTRY,
)
RELAY_EDGE_STOPS = _counter(
    "relay_edge_stops",
    "Sockets the relay manager switched off on its own authority, by reason:"
    " unsupervised_too_long (the mothership silent too long) or circuit_over_limit.",
    "reason",
)
RELAY_ON_REFUSED = _counter(
    "relay_on_refused", "Commands to switch on refused while the mothership was unreachable."
)
RELAY_TIMER_RENEWAL_FAILURES = _counter(
    "relay_timer_renewal_failures",
    "Auto-off timer renewals a relay did not take; two in a row and it switches itself off.",
)
RELAY_OUTBOX_DROPPED = _counter(
    "relay_outbox_dropped",
    "Chunks dropped unsent, oldest first, because the outbox was full (a long broker outage).",
)
RELAY_COMMAND_ROUND_TRIP = Histogram(
    "relay_command_round_trip_seconds",
    "From the relay manager receiving a command to the device's read-back of its new state.",
    namespace="evplug",
    registry=REGISTRY,
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# -- telemetry store ------------------------------------------------------------------------

TELEMETRY_ROWS_WRITTEN = _counter(
    "telemetry_rows_written", "Readings committed to the telemetry store."
)
TELEMETRY_FLUSHES = _counter("telemetry_flushes", "Batches of readings committed.")
TELEMETRY_REFUSED = _counter(
    "telemetry_refused",
    "Batches the telemetry sink refused (backpressure: the message comes back later), by"
    " reason: backlog (too many readings wait), oversize_batch (larger than the whole buffer).",
    "reason",
)
TELEMETRY_EXPIRED = _counter(
    "telemetry_expired",
    "Readings that arrived older than the raw retention (telemetry.raw_retention_days): not"
    " written, as their day is pruned; logged as telemetry.expired_readings.",
)
TELEMETRY_ROLLUP_MINUTES = _counter(
    "telemetry_rollup_minutes", "Minutes whose per-plug rollups were recomputed from raw readings."
)
TELEMETRY_ROLLUPS_LATE = _counter(
    "telemetry_rollups_late",
    "Minutes marked for a rollup after their raw readings were pruned: their rollup is left as"
    " it was (logged as telemetry.late_rollups).",
)
TELEMETRY_PRUNED = _counter(
    "telemetry_pruned",
    "Raw readings removed past their retention, by how: rows (SQLite, in small deletes),"
    " partitions (PostgreSQL, a day's partition dropped whole).",
    "unit",
)

# -- InfluxDB export ------------------------------------------------------------------------

INFLUX_POINTS_WRITTEN = _counter(
    "influx_points_written", "Points InfluxDB accepted, by measurement.", "measurement"
)
INFLUX_POINTS_DROPPED = _counter(
    "influx_points_dropped",
    "Points not exported, by reason: queue_full (InfluxDB slower than ingest, or away, for"
    " longer than the queue holds), rejected (InfluxDB refused the batch: 4xx).",
    "reason",
)
INFLUX_WRITE_FAILURES = _counter(
    "influx_write_failures",
    "Batches InfluxDB did not take at once (unreachable, 5xx, timeout): retried with backoff.",
)


_SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created", "")


def value(sample: str, **labels: str) -> float:
    """One sample's current value: 0 for a label set not counted yet, KeyError for a typo.

    For tests, e.g. ``value("evplug_readings_rejected_total", reason="future")``.
    """
    found = REGISTRY.get_sample_value(sample, labels)
    if found is not None:
        return found
    if not any(sample == f"{m.name}{s}" for m in REGISTRY.collect() for s in _SUFFIXES):
        raise KeyError(f"no evplug metric has a sample named {sample!r}")
    return 0.0


# -- accounts (web) -------------------------------------------------------------------------

MAILS_FAILED = _counter(
    "mails_failed", "Mails the SMTP server did not take (logged with the reason)."
)
SIGN_UP_HOOK_FAILED = _counter(
    "sign_up_hook_failed",
    "New accounts whose sign-up work (the payments customer) failed; it is retried when needed.",
)
AUTH_RATE_LIMITED = _counter(
    "auth_rate_limited",
    "Sign-in, sign-up and mail requests refused for coming too often, by what was limited.",
    "action",
)

# -- payments (web) --------------------------------------------------------------------------

PAYMENT_EVENTS = _counter(
    "payment_events",
    "Payment provider events by type and result: applied, duplicate (applied before: changed"
    " nothing), ignored (nothing of ours to change, e.g. an unknown driver; see the log),"
    " rejected (bad signature or unreadable: 400, changed nothing).",
    "type",
    "result",
)
