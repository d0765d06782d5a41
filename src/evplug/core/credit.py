"""One balance, several sessions: what each open session of an account may still spend, and
when the account's auto top-up is due.

A driver's balance is debited only when a session closes, so while sessions run, what is really
left is the balance less what every open session has accrued. Each session may spend the balance
less what the others have accrued: however the energy is shared out, all of them together stop
at the balance, never past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evplug.core.pricing import cost_cents


@dataclass(frozen=True, slots=True)
class OpenSession:
    plug_id: str
    energy_wh: float
    price_cents_per_kwh: int

    @property
    def accrued_cents(self) -> int:
        return cost_cents(self.energy_wh, self.price_cents_per_kwh)


def available_cents(balance_cents: int, sessions: Sequence[OpenSession]) -> int:
    """The balance less what the open sessions have accrued."""
    return balance_cents - sum(s.accrued_cents for s in sessions)


def session_credits(balance_cents: int, sessions: Sequence[OpenSession]) -> dict[str, int]:
    """Each session's credit: the balance less what the account's other sessions accrued."""
    total = sum(s.accrued_cents for s in sessions)
    return {s.plug_id: balance_cents - (total - s.accrued_cents) for s in sessions}


def top_up_due(balance_cents: int, sessions: Sequence[OpenSession], threshold_cents: int) -> bool:
    return bool(sessions) and available_cents(balance_cents, sessions) < threshold_cents


def top_up_key(user_id: str, threshold_cents: int, last_credit_key: str) -> str:
    """One crossing of the threshold: the same until the account is credited again, so plugs
    crossing it together (or a retry) ask for one charge."""
    return f"auto-top-up:{user_id}:{threshold_cents}:after:{last_credit_key or 'start'}"
