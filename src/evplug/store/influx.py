"""Export to InfluxDB (optional): readings, transitions and closed sessions as line protocol.

The store stays the one source of truth; InfluxDB gets a copy for charts (Grafana). Nothing here
ever holds ingest up: the sink and the event hook only append to a bounded queue (``offer``),
and a background flush sends it in batches. While InfluxDB is away the batch in hand is retried
with a doubling backoff; past ``max_queued_points`` new points are dropped, counted
(``evplug_influx_points_dropped_total``) and logged. Measurements are the original's:
``plug_readings``, ``plug_transitions`` and ``sessions``, each tagged by site and plug.

InfluxDB 1.x takes ``POST /write?db=...`` (basic auth when it has users), 2.x
``POST /api/v2/write?org=...&bucket=...`` with ``Authorization: Token ...``; both at ms precision.
"""

from __future__ import annotations

import base64
import collections
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp
import structlog

from evplug import metrics
from evplug.clock import Clock
from evplug.core.plug import Effect, SessionClosed, Transitioned
from evplug.settings import InfluxSettings
from evplug.store.telemetry import Row

log = structlog.get_logger(__name__)
_DEFAULTS = InfluxSettings()

READINGS = "plug_readings"
TRANSITIONS = "plug_transitions"
SESSIONS = "sessions"
_READING_FIELDS = ("current_a", "voltage_v", "power_factor", "active_power_w", "energy_wh")
_FIRST_BACKOFF_S = 0.5
_TIMEOUT = aiohttp.ClientTimeout(total=10)

SiteOf = Callable[[str], str | None]
Field = str | int | float | None


# -- line protocol ----------------------------------------------------------------------------


def _key(text: str) -> str:
    """A measurement, tag key, tag value or field key, escaped."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _value(value: str | int | float) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None  # InfluxDB has no NaN or inf
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(measurement: str, tags: dict[str, str | None], fields: dict[str, Field], ms: int) -> str:
    """One point; empty tags and None (or non-finite) fields are left out."""
    tag_text = "".join(f",{_key(k)}={_key(v)}" for k, v in sorted(tags.items()) if v)
    values = ((k, _value(v)) for k, v in fields.items() if v is not None)
    field_text = ",".join(f"{_key(k)}={v}" for k, v in values if v is not None)
    return f"{_key(measurement)}{tag_text} {field_text} {ms}"


def reading_line(row: Row, site_id: str | None) -> str:
    plug_id, at_ms, actual_state, *values = row
    fields: dict[str, Field] = dict(zip(_READING_FIELDS, values, strict=True))
    fields["actual_state"] = int(actual_state)
    return line(READINGS, {"site": site_id, "plug": plug_id}, fields, at_ms)


def transition_line(t: Transitioned, site_id: str | None) -> str:
    fields: dict[str, Field] = {
        "from_state": str(t.from_state),
        "to_state": str(t.to_state),
        "trigger": str(t.trigger),
        "session_id": t.session_id or None,
    }
    return line(TRANSITIONS, {"site": site_id, "plug": t.plug_id}, fields, t.at_ms)


def session_line(s: SessionClosed, site_id: str | None) -> str:
    fields: dict[str, Field] = {
        "session_id": s.session_id,
        "user_id": s.user_id,
        "started_ms": s.started_ms,
        "duration_s": (s.ended_ms - s.started_ms) / 1000,
        "energy_wh": s.energy_wh,
        "cost_cents": s.cost_cents,
        "price_cents_per_kwh": s.price_cents_per_kwh,
        "reason": s.reason,
    }
    return line(SESSIONS, {"site": site_id, "plug": s.plug_id}, fields, s.ended_ms)


# -- where it goes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InfluxTarget:
    url: str
    version: int = 1
    database: str = _DEFAULTS.database
    username: str | None = None
    password: str | None = None
    bucket: str = _DEFAULTS.bucket
    org: str = _DEFAULTS.org
    token: str | None = None

    @classmethod
    def from_settings(cls, s: InfluxSettings) -> InfluxTarget:
        return cls(s.url, s.version, s.database, s.username, s.password, s.bucket, s.org, s.token)

    def request(self) -> tuple[str, dict[str, str], dict[str, str]]:
        """URL, query parameters and headers of a write."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.version == 2:
            if self.token:
                headers["Authorization"] = f"Token {self.token}"
            params = {"org": self.org, "bucket": self.bucket, "precision": "ms"}
            return f"{self.url}/api/v2/write", params, headers
        if self.username is not None:
            user = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(user).decode()
        return f"{self.url}/write", {"db": self.database, "precision": "ms"}, headers


# -- the export -------------------------------------------------------------------------------

# A queued item: its measurement, how many points it holds, and what they are made from.
_Item = tuple[str, int, list[Row] | Transitioned | SessionClosed]


class InfluxExport:
    def __init__(
        self,
        target: InfluxTarget,
        site_of: SiteOf,
        clock: Clock,
        batch_points: int = _DEFAULTS.batch_points,
        max_queued_points: int = _DEFAULTS.max_queued_points,
        max_backoff_s: float = _DEFAULTS.max_backoff_s,
    ) -> None:
        self.target = target
        self.site_of = site_of
        self.clock = clock
        self.batch_points = batch_points
        self.max_queued_points = max_queued_points
        self.max_backoff_s = max_backoff_s
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued = 0
        self._dropped_unlogged = 0
        self._batch: list[str] = []  # taken from the queue, not yet accepted
        self._batch_counts: collections.Counter[str] = collections.Counter()
        self._failures = 0
        self._retry_at_ms = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def queued(self) -> int:
        """Points waiting, not counting the batch being sent."""
        return self._queued

    # -- taking points (never waits) ----------------------------------------------------------

    def offer_readings(self, rows: list[Row]) -> None:
        """The sink's hook: a committed batch of readings."""
        self._offer((READINGS, len(rows), rows))

    def offer_effect(self, effect: Effect) -> None:
        """The mothership's event hook: transitions and closed sessions are exported."""
        if isinstance(effect, Transitioned):
            self._offer((TRANSITIONS, 1, effect))
        elif isinstance(effect, SessionClosed):
            self._offer((SESSIONS, 1, effect))

    def _offer(self, item: _Item) -> None:
        points = item[1]
        if self._queued + points > self.max_queued_points:
            metrics.INFLUX_POINTS_DROPPED.labels(reason="queue_full").inc(points)
            self._dropped_unlogged += points
            return
        self._queue.append(item)
        self._queued += points

    # -- sending (the background loop) --------------------------------------------------------

    async def flush(self) -> None:
        """Send what is queued, a batch at a time; after a failure, wait out the backoff."""
        if self._dropped_unlogged:
            log.warning(
                "influx.points_dropped",
                points=self._dropped_unlogged,
                reason="queue_full",
                fix="InfluxDB is away or slower than ingest: check it, or raise"
                " influx.max_queued_points",
            )
            self._dropped_unlogged = 0
        if self.clock.now_ms() < self._retry_at_ms:
            return
        while self._batch or self._take():
            if not await self._send():
                return

    def _take(self) -> bool:
        room = self.batch_points
        while self._queue and room > 0:
            measurement, points, payload = self._queue.popleft()
            if isinstance(payload, list) and points > room:  # the rest stays at the head
                self._queue.appendleft((measurement, points - room, payload[room:]))
                payload, points = payload[:room], room
            self._queued -= points
            self._batch.extend(self._lines(measurement, payload))
            self._batch_counts[measurement] += points
            room -= points
        return bool(self._batch)

    def _lines(
        self, measurement: str, payload: list[Row] | Transitioned | SessionClosed
    ) -> Iterable[str]:
        site_of = self.site_of
        if isinstance(payload, list):
            return [reading_line(row, site_of(row[0])) for row in payload]
        if isinstance(payload, Transitioned):
            return [transition_line(payload, site_of(payload.plug_id))]
        return [session_line(payload, site_of(payload.plug_id))]

    async def _send(self) -> bool:
        """POST the batch in hand; True when it is done with (taken, or refused for good)."""
        url, params, headers = self.target.request()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        body = "\n".join(self._batch).encode()
        try:
            async with self._session.post(
                url, params=params, headers=headers, data=body
            ) as response:
                status, text = response.status, (await response.text())[:500]
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        if status >= 500 or status == 429:
            return self._failed(f"HTTP {status}: {text}")
        if status >= 300:
            # Retrying cannot help (bad credentials, no such database, a malformed point).
            metrics.INFLUX_POINTS_DROPPED.labels(reason="rejected").inc(len(self._batch))
            log.error(
                "influx.batch_rejected",
                status=status,
                points=len(self._batch),
                answer=text,
                fix="check the influx.* settings (URL, version, database or bucket, credentials)",
            )
        else:
            for measurement, points in self._batch_counts.items():
                metrics.INFLUX_POINTS_WRITTEN.labels(measurement=measurement).inc(points)
        self._batch, self._batch_counts = [], collections.Counter()
        self._failures = self._retry_at_ms = 0
        return True

    def _failed(self, reason: str) -> bool:
        metrics.INFLUX_WRITE_FAILURES.inc()
        delay_s = min(self.max_backoff_s, _FIRST_BACKOFF_S * 2**self._failures)
        self._failures += 1
        self._retry_at_ms = self.clock.now_ms() + round(delay_s * 1000)
        log.warning(
            "influx.write_failed",
            reason=reason,
            url=self.target.url,
            retry_in_s=delay_s,
            points=len(self._batch),
            queued=self._queued,
        )
        return False

    async def close(self) -> None:
        """One last try to send what is queued, then the connection closes."""
        try:
            await self.flush()
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None
