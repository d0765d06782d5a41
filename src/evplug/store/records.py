"""What the store hands out: plain frozen values, never ORM rows bound to a database session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


@dataclass(frozen=True, slots=True)
class PlugSnapshot:
    """What a start needs of a plug: where it is and its state machine's snapshot."""

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
