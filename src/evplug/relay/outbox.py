"""The relay manager's outbox: every chunk on disk until the broker has acked it.

A chunk is written (SQLite, WAL, synced) before it is sent and deleted when the broker acks it,
so neither a broker outage nor a relay restart loses a reading: what is left is sent again, in
the order it was taken, under its original message id, and the broker drops what had already
arrived. The outbox is bounded: past ``max_messages`` the oldest are dropped, counted and logged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from evplug import metrics

log = structlog.get_logger(__name__)

IN_MEMORY = ":memory:"
DEFAULT_MAX_MESSAGES = 200_000  # days of a site's 2-second polls

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    data BLOB NOT NULL
)
"""


class OutboxError(RuntimeError):
    """The outbox file cannot be opened; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    subject: str
    msg_id: str
    data: bytes


class Outbox:
    def __init__(self, path: Path | str = IN_MEMORY, max_messages: int = DEFAULT_MAX_MESSAGES):
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        self.path = str(path)
        self.max_messages = max_messages
        self.dropped = 0  # since this process started; the metric counts the same
        self.acked = 0  # since this process started: each one the broker answered
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            if self.path != IN_MEMORY:
                self._db.execute("PRAGMA journal_mode=WAL")
                # A reading is only as safe as the last fsync: a Pi loses power.
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise OutboxError(
                f"cannot open the outbox {self.path} ({exc}): is its directory writable, and"
                " the file not used by another relay manager?"
            ) from None
        self._count = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        metrics.RELAY_OUTBOX_PENDING.set(self._count)

    def __len__(self) -> int:
        return self._count

    def put(self, messages: Sequence[tuple[str, str, bytes]]) -> None:
        """``(subject, msg_id, data)`` in order, committed together; the oldest go past the cap."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO outbox (subject, msg_id, data) VALUES (?, ?, ?)", messages
            )
            over = self._count + len(messages) - self.max_messages
            if over > 0:
                self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                    (over,),
                )
        self._count += len(messages) - max(over, 0)
        metrics.RELAY_OUTBOX_PENDING.set(self._count)
        if over > 0:
            self.dropped += over
            metrics.RELAY_OUTBOX_DROPPED.inc(over)
            log.warning(
                "relay.outbox_full",
                dropped=over,
                kept=self._count,
                fix="the broker has been unreachable for long: check the uplink and"
                " EVPLUG_BUS_URL, or raise relay.outbox_max_messages if the disk allows",
            )

    def oldest(self, limit: int) -> list[Pending]:
        rows = self._db.execute(
            "SELECT id, subject, msg_id, data FROM outbox ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [Pending(*row) for row in rows]

    def remove(self, sent: Sequence[Pending]) -> None:
        """Acked by the broker: gone for good, in one transaction (one sync for a window).

        ``sent`` are the oldest messages, in order (as ``oldest`` gave them): every message
        between the first and the last of them is one of them, so one range goes.
        """
        if not sent:
            return
        with self._db:
            self._db.execute("BEGIN")
            deleted = self._db.execute(
                "DELETE FROM outbox WHERE id BETWEEN ? AND ?", (sent[0].id, sent[-1].id)
            ).rowcount
        self._count -= deleted
        self.acked += len(sent)
        metrics.RELAY_OUTBOX_PENDING.set(self._count)

    def close(self) -> None:
        self._db.close()
