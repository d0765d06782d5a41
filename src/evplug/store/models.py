"""The schema. Money is integer cents; times are integer milliseconds since the epoch."""

from __future__ import annotations

import re

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def described(obj: object, name: str | None, type_: str, reflected: bool, _: object) -> bool:
    """Whether the models describe this database object (Alembic's ``include_object``).

    Not PostgreSQL's day partitions of the readings (made as days come, ``partitions``) nor
    its BRIN index on their time (migration 0007): a model cannot say "on PostgreSQL only".
    """
    if not reflected or name is None:
        return True
    if type_ == "table":
        return re.fullmatch(r"readings_p\d{8}", name) is None
    return not (type_ == "index" and name == "readings_time_brin")


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents_per_kwh: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))


class Circuit(Base):
    __tablename__ = "circuits"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    limit_a: Mapped[float] = mapped_column(Float)


class CircuitParent(Base):
    """The circuit a circuit is under (a sub-circuit under the site's supply); migration 0004."""

    __tablename__ = "circuit_parents"
    id: Mapped[str] = mapped_column(ForeignKey("circuits.id"), primary_key=True)
    parent_id: Mapped[str] = mapped_column(ForeignKey("circuits.id"))


class PlugRow(Base):
    __tablename__ = "plugs"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    fuze_id: Mapped[str] = mapped_column(String(128))
    label: Mapped[str] = mapped_column(String(200), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    state: Mapped[str] = mapped_column(String(40))
    # The plug state machine's snapshot (core.plug.Plug.snapshot), for hydration on restart.
    snapshot: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    updated_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class PlugMeter(Base):
    """A plug's meter as a checkpoint saved it (core.plug.Plug.meter), newer than the fields of
    its snapshot; the next whole snapshot deletes it (migration 0008). A narrow row of its own:
    a checkpoint rewrites tens of thousands of them, not the plugs' wide ones."""

    __tablename__ = "plug_meters"
    __table_args__ = ({"sqlite_with_rowid": False},)  # one B-tree, looked up by its key
    plug_id: Mapped[str] = mapped_column(ForeignKey("plugs.id"), primary_key=True)
    meter: Mapped[dict[str, object]] = mapped_column(JSON)
    saved_ms: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # The sum of the user's ledger entries, kept in the same transaction as each posting.
    balance_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # Migration 0005: accounts. No hash: the account signs in by emailed link or OIDC only.
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    role: Mapped[str] = mapped_column(String(20), default="driver")
    created_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class AuthSession(Base):
    """A signed-in device. The cookie holds a token; only its SHA-256 is kept here."""

    __tablename__ = "auth_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class OneTimeToken(Base):
    """An emailed link's token (verify, sign-in, reset, change email) or an OIDC login's state,
    kept as its SHA-256; taken at most once, before it expires."""

    __tablename__ = "one_time_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    # What the link carries besides who: the new address of a change of email, an OIDC nonce.
    payload: Mapped[str] = mapped_column(String(2000), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    used_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ChargingSession(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plug_id: Mapped[str] = mapped_column(ForeignKey("plugs.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    started_ms: Mapped[int] = mapped_column(BigInteger)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    price_cents_per_kwh: Mapped[int] = mapped_column(Integer)
    energy_wh: Mapped[float] = mapped_column(Float, default=0.0)
    cost_cents: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    end_reason: Mapped[str] = mapped_column(String(40), default="")


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(String(200), default="")
    # Who posted a refund or an adjustment (migration 0006); the memo says why.
    actor: Mapped[str] = mapped_column(String(100), default="", server_default="")
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_ledger_idempotency_key"),)


class PaymentEvent(Base):
    """A provider's event, recorded in the transaction that applied it: each applies once."""

    __tablename__ = "payment_events"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(60))
    processed_ms: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(200), default="")


class PaymentCustomer(Base):
    """A driver's customer at the payments provider, and their card for off-session charges."""

    __tablename__ = "payment_customers"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[str] = mapped_column(String(100), unique=True)
    default_payment_method: Mapped[str] = mapped_column(String(100), default="")


class PaymentMethodRow(Base):
    __tablename__ = "payment_methods"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    brand: Mapped[str] = mapped_column(String(40), default="")
    last4: Mapped[str] = mapped_column(String(4), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)


class PaymentIntentRow(Base):
    """A payment we asked for: a top-up, an auto top-up or a guest's card hold."""

    __tablename__ = "payment_intents"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(40))
    failure: Mapped[str] = mapped_column(String(200), default="")
    # A guest's hold: the plug it pays for, where the receipt goes, what was finally taken.
    plug_id: Mapped[str] = mapped_column(String(128), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    captured_cents: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class AutoTopUp(Base):
    """A driver's auto top-up: charge ``amount_cents`` when the balance falls below the
    threshold; paused, with the reason, after a decline until the driver acts."""

    __tablename__ = "auto_top_ups"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    threshold_cents: Mapped[int] = mapped_column(BigInteger)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    paused_reason: Mapped[str] = mapped_column(String(200), default="")
    paused_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Transition(Base):
    __tablename__ = "transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plug_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64), default="")
    from_state: Mapped[str] = mapped_column(String(40))
    to_state: Mapped[str] = mapped_column(String(40))
    trigger: Mapped[str] = mapped_column(String(40))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    # A retried batch must not add a transition twice; the key also serves a plug's history.
    __table_args__ = (
        UniqueConstraint(
            "plug_id", "at_ms", "from_state", "to_state", name="uq_transitions_plug_at_change"
        ),
    )


class ReadingRow(Base):
    __tablename__ = "readings"
    plug_id: Mapped[str] = mapped_column(String(128))
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    actual_state: Mapped[int] = mapped_column(Integer)
    current_a: Mapped[float] = mapped_column(Float)
    voltage_v: Mapped[float] = mapped_column(Float)
    power_factor: Mapped[float] = mapped_column(Float)
    active_power_w: Mapped[float] = mapped_column(Float)
    energy_wh: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Time first: each batch appends at the end of the key, however big the table grows.
    __table_args__ = (PrimaryKeyConstraint("timestamp_ms", "plug_id", name="readings_pkey"),)


class ReadingRollup(Base):
    """One plug's readings over one minute, kept after the raw readings are pruned (0007).

    Recomputed from the raw readings whenever that minute receives one, so it always equals their
    aggregate, whatever order or how many times they arrived. The counter's first and last
    values (with their times) give the energy; power is summed, so a mean is sum / readings.
    """

    __tablename__ = "reading_rollups"
    plug_id: Mapped[str] = mapped_column(String(128))
    minute_ms: Mapped[int] = mapped_column(BigInteger)
    readings: Mapped[int] = mapped_column(Integer)
    power_sum_w: Mapped[float] = mapped_column(Float)
    max_power_w: Mapped[float] = mapped_column(Float)
    energy_first_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    energy_first_wh: Mapped[float | None] = mapped_column(Float, nullable=True)
    energy_last_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    energy_last_wh: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Time first, as the readings: a minute's rows append at the key's end; by plug for charts.
    __table_args__ = (
        PrimaryKeyConstraint("minute_ms", "plug_id", name="reading_rollups_pkey"),
        Index("ix_reading_rollups_plug_minute", "plug_id", "minute_ms"),
    )


class RollupDue(Base):
    """A minute that received readings since its rollup was last computed (0007).

    Written in the readings' own transaction, one row per minute per batch, so the rollup of a
    minute is recomputed from everything committed when its mark is seen.
    """

    __tablename__ = "rollups_due"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    minute_ms: Mapped[int] = mapped_column(BigInteger)
