"""The prepaid balance as an immutable ledger.

Every top-up, session charge, refund and adjustment is one entry with an idempotency key made of
its kind's prefix and the id of what caused it: the payment intent (``pi:``), the session
(``session:``), the refund (``refund:``), the operator's adjustment (``adjustment:``). The balance
is the sum of the entries; posting an entry whose key is already there changes nothing (the store
enforces that: ``Ledger.post``). Refunds and adjustments name who made them and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# One posting may move at most this much: anything bigger is a bug or an attack.
MAX_ENTRY_CENTS = 1_000_000
# As the store keeps them (ledger_entries.idempotency_key, .actor, .memo).
MAX_KEY_CHARS = 200
MAX_ACTOR_CHARS = 100
MAX_MEMO_CHARS = 200


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
# Whose id keys each kind: one payment intent credits once, one session is billed once.
KEY_PREFIX = {
    EntryKind.TOP_UP: "pi:",
    EntryKind.SESSION_CHARGE: "session:",
    EntryKind.REFUND: "refund:",
    EntryKind.ADJUSTMENT: "adjustment:",
}
# Money a person moved by hand must say who and why.
_ATTRIBUTED = (EntryKind.REFUND, EntryKind.ADJUSTMENT)


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
    # Who posted it: an operator's name for adjustments and refunds, else the system part.
    actor: str = ""


def validate(entry: Entry) -> Entry:
    amount = entry.amount_cents
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise LedgerError(f"amount must be integer cents, got {amount!r}")
    if abs(amount) > MAX_ENTRY_CENTS:
        raise LedgerError(f"amount {amount} is outside ±{MAX_ENTRY_CENTS} cents")
    sign = _SIGN[entry.kind]
    if sign and amount * sign < 0:
        raise LedgerError(f"a {entry.kind} entry cannot be {amount} cents")
    prefix = KEY_PREFIX[entry.kind]
    key = entry.idempotency_key
    if not key.startswith(prefix) or len(key) == len(prefix) or len(key) > MAX_KEY_CHARS:
        raise LedgerError(
            f"a {entry.kind} entry is keyed {prefix}<id> (at most {MAX_KEY_CHARS} characters),"
            f" not {key!r}"
        )
    if entry.kind in _ATTRIBUTED and not (entry.actor.strip() and entry.memo.strip()):
        raise LedgerError(f"a {entry.kind} must say who made it (actor) and why (memo)")
    if len(entry.actor) > MAX_ACTOR_CHARS or len(entry.memo) > MAX_MEMO_CHARS:
        raise LedgerError(
            f"actor and memo are at most {MAX_ACTOR_CHARS} and {MAX_MEMO_CHARS} characters"
        )
    return entry


def top_up_key(payment_intent_id: str) -> str:
    return f"{KEY_PREFIX[EntryKind.TOP_UP]}{payment_intent_id}"


def top_up(
    user_id: str, payment_intent_id: str, cents: int, created_ms: int, memo: str = ""
) -> Entry:
    """A payment's credit, keyed on its payment intent: however often confirmed, credited once."""
    return validate(
        Entry(user_id, EntryKind.TOP_UP, cents, top_up_key(payment_intent_id), created_ms, memo)
    )


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


def refund(
    user_id: str, refund_id: str, cents: int, created_ms: int, actor: str, reason: str
) -> Entry:
    """Money given back to the card: it leaves the balance, once per refund."""
    return validate(
        Entry(user_id, EntryKind.REFUND, -cents, f"refund:{refund_id}", created_ms, reason, actor)
    )


def adjustment(
    user_id: str, adjustment_id: str, cents: int, created_ms: int, actor: str, reason: str
) -> Entry:
    """An operator's correction, either way, with who made it and why."""
    return validate(
        Entry(
            user_id,
            EntryKind.ADJUSTMENT,
            cents,
            f"adjustment:{adjustment_id}",
            created_ms,
            reason,
            actor,
        )
    )
