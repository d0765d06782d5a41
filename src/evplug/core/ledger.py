"""The prepaid balance as an immutable ledger.

Every top-up, session charge, refund and adjustment is one entry with an idempotency key (the
payment intent id, the session id). The balance is the sum of the entries; posting an entry
whose key is already there changes nothing (the store enforces that: ``Repository.post``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# One posting may move at most this much: anything bigger is a bug or an attack.
MAX_ENTRY_CENTS = 1_000_000


class EntryKind(StrEnum):
    TOP_UP = "top_up"
    SESSION_CHARGE = "session_charge"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


# The sign each kind must carry: charges take money, top-ups add it.
_SIGN = {
    EntryKind.TOP_UP: 1,
    EntryKind.SESSION_CHARGE: -1,
    EntryKind.REFUND: -1,
    EntryKind.ADJUSTMENT: 0,
}


class LedgerError(ValueError):
    """An entry that must not be posted."""


@dataclass(frozen=True, slots=True)
class Entry:
    user_id: str
    kind: EntryKind
    amount_cents: int
    idempotency_key: str
    created_ms: int
    memo: str = ""


def validate(entry: Entry) -> Entry:
    amount = entry.amount_cents
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise LedgerError(f"amount must be integer cents, got {amount!r}")
    if abs(amount) > MAX_ENTRY_CENTS:
        raise LedgerError(f"amount {amount} is outside ±{MAX_ENTRY_CENTS} cents")
    sign = _SIGN[entry.kind]
    if sign and amount * sign < 0:
        raise LedgerError(f"a {entry.kind} entry cannot be {amount} cents")
    if not entry.idempotency_key:
        raise LedgerError("every entry needs an idempotency key")
    return entry


def session_charge(
    user_id: str, session_id: str, cost_cents: int, created_ms: int, memo: str = ""
) -> Entry:
    return validate(
        Entry(
            user_id,
            EntryKind.SESSION_CHARGE,
            -cost_cents,
            f"session:{session_id}",
            created_ms,
            memo,
        )
    )
