"""What the store hands out: plain frozen values, never ORM rows bound to a database session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class SiteRecord:
    id: str
    name: str
    price_cents_per_kwh: int
    currency: str


@dataclass(frozen=True, slots=True)
class PlugRecord:
    id: str
    site_id: str
    fuze_id: str
    label: str
    model: str
    state: str
    snapshot: dict[str, Any]


class PlugSnapshot(NamedTuple):
    """What a start needs of a plug: where it is and its state machine's snapshot (a tuple: a
    start makes 100,000 of them, and a frozen dataclass takes several times longer to make)."""

    id: str
    site_id: str
    fuze_id: str
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    name: str
    email: str
    balance_cents: int


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    plug_id: str
    user_id: str
    started_ms: int
    ended_ms: int | None
    price_cents_per_kwh: int
    energy_wh: float
    cost_cents: int | None
    end_reason: str


@dataclass(frozen=True, slots=True)
class EntryRecord:
    id: int
    user_id: str
    kind: str
    amount_cents: int
    idempotency_key: str
    created_ms: int
    memo: str
    actor: str


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """A user as the sign-in code sees them; ``role`` is a ``evplug.web.auth.Role`` value."""

    id: str
    name: str
    email: str
    role: str
    email_verified: bool
    password_hash: str | None
    created_ms: int


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A signed-in device (a server-side session), as listed to its owner."""

    id: str
    user_id: str
    created_ms: int
    last_seen_ms: int
    user_agent: str


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A one-time token that was just taken."""

    purpose: str
    user_id: str | None
    payload: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class LedgerMismatch:
    """An account whose cached balance is not the sum of its ledger entries."""

    user_id: str
    cached_cents: int
    sum_cents: int


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    user_id: str
    provider: str
    customer_id: str
    default_payment_method: str


@dataclass(frozen=True, slots=True)
class PaymentMethodRecord:
    id: str
    user_id: str
    brand: str
    last4: str


@dataclass(frozen=True, slots=True)
class PaymentIntentRecord:
    """A payment asked for: ``purpose`` top_up, auto_top_up or guest_hold."""

    id: str
    purpose: str
    user_id: str | None
    amount_cents: int
    currency: str
    status: str
    created_ms: int
    failure: str = ""
    plug_id: str = ""
    email: str = ""
    captured_cents: int | None = None


@dataclass(frozen=True, slots=True)
class AutoTopUpRecord:
    user_id: str
    threshold_cents: int
    amount_cents: int
    paused_reason: str
