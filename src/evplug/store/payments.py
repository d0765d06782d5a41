"""Payments: provider events applied once, customers, saved cards, payment intents, auto top-up.

An event is applied in one transaction with the record that it was: of two deliveries of one
event, racing or not, the second finds the record and changes nothing. A credit inside it is a
ledger entry keyed on its payment intent, so two different events confirming one payment (a
checkout's completion and its intent's success) credit it once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evplug.core import ledger
from evplug.store.models import (
    AutoTopUp,
    LedgerEntry,
    PaymentCustomer,
    PaymentEvent,
    PaymentIntentRow,
    PaymentMethodRow,
    User,
)
from evplug.store.records import (
    AutoTopUpRecord,
    CustomerRecord,
    PaymentIntentRecord,
    PaymentMethodRecord,
)
from evplug.store.sql import insert_new, post_entry

MAX_OUTCOME_CHARS = 200


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying an event did: its outcome, and the ledger keys it posted (by user)."""

    outcome: str
    posted: tuple[tuple[str, str], ...] = ()
    # (payment intent, plug id, guest's user id) of each card hold the event authorized.
    holds: tuple[tuple[str, str, str], ...] = ()


class EventWork:
    """What an event may change, inside the transaction that records it."""

    def __init__(self, db: AsyncSession, now_ms: int) -> None:
        self.db = db
        self.now_ms = now_ms
        self.posted: list[tuple[str, str]] = []
        self.holds: list[tuple[str, str, str]] = []

    async def post(self, entry: ledger.Entry) -> bool:
        ledger.validate(entry)
        if await post_entry(self.db, entry):
            self.posted.append((entry.user_id, entry.idempotency_key))
            return True
        return False

    async def ensure_guest(self, user_id: str) -> None:
        """A guest's account for one card hold: the hold is its credit, the session its charge.
        (The guest's own email, if given, stays with the hold: one person may hold twice.)"""
        await self.db.execute(
            insert_new(self.db, User, "id").values(
                id=user_id, name="guest", email=f"{user_id}@guest.invalid", balance_cents=0
            )
        )

    async def user_exists(self, user_id: str) -> bool:
        return await self.db.get(User, user_id) is not None

    async def user_of_customer(self, customer_id: str) -> str | None:
        return await self.db.scalar(
            select(PaymentCustomer.user_id).where(PaymentCustomer.customer_id == customer_id)
        )

    async def user_of_credit(self, payment_intent_id: str) -> str | None:
        """Whose balance a payment intent credited (None: it credited nothing)."""
        return await self.db.scalar(
            select(LedgerEntry.user_id).where(
                LedgerEntry.idempotency_key == ledger.top_up_key(payment_intent_id)
            )
        )

    async def intent(self, payment_intent_id: str) -> PaymentIntentRecord | None:
        row = await self.db.get(PaymentIntentRow, payment_intent_id)
        return None if row is None else intent_record(row)

    async def intent_status(
        self,
        payment_intent_id: str,
        status: str,
        failure: str = "",
        captured_cents: int | None = None,
    ) -> bool:
        """The intent's new status; False when we never asked for this intent."""
        values: dict[str, object] = {
            "status": status,
            "failure": failure[:MAX_OUTCOME_CHARS],
            "updated_ms": self.now_ms,
        }
        if captured_cents is not None:
            values["captured_cents"] = captured_cents
        changed = await self.db.execute(
            update(PaymentIntentRow)
            .where(PaymentIntentRow.id == payment_intent_id)
            .values(**values)
            .returning(PaymentIntentRow.id)
            .execution_options(synchronize_session=False)
        )
        return changed.scalar() is not None

    async def add_method(self, user_id: str, method_id: str, brand: str, last4: str) -> None:
        await self.db.execute(
            insert_new(self.db, PaymentMethodRow, "id").values(
                id=method_id, user_id=user_id, brand=brand, last4=last4, created_ms=self.now_ms
            )
        )

    async def remove_method(self, method_id: str) -> None:
        await self.db.execute(delete(PaymentMethodRow).where(PaymentMethodRow.id == method_id))
        await self.db.execute(
            update(PaymentCustomer)
            .where(PaymentCustomer.default_payment_method == method_id)
            .values(default_payment_method="")
        )

    async def set_default_method(self, user_id: str, method_id: str) -> None:
        await self.db.execute(
            update(PaymentCustomer)
            .where(PaymentCustomer.user_id == user_id)
            .values(default_payment_method=method_id)
        )

    async def pause_auto_top_up(self, user_id: str, reason: str) -> None:
        await self.db.execute(
            update(AutoTopUp)
            .where(AutoTopUp.user_id == user_id)
            .values(paused_reason=reason[:MAX_OUTCOME_CHARS], paused_ms=self.now_ms)
        )


Work = Callable[[EventWork], Awaitable[str]]


class Payments:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def apply_event(
        self, event_id: str, event_type: str, now_ms: int, work: Work
    ) -> Applied | None:
        """Apply an event once: ``work`` runs in the transaction that records it; None when it
        was applied before. If ``work`` raises, nothing of it stays and it is not recorded."""
        async with self._sessions.begin() as db:
            claimed = await db.scalar(
                insert_new(db, PaymentEvent, "id")
                .values(id=event_id, type=event_type[:60], processed_ms=now_ms, outcome="")
                .returning(PaymentEvent.id)
            )
            if claimed is None:  # applied before, perhaps a moment ago by another process
                return None
            doing = EventWork(db, now_ms)
            outcome = (await work(doing))[:MAX_OUTCOME_CHARS]
            await db.execute(
                update(PaymentEvent).where(PaymentEvent.id == event_id).values(outcome=outcome)
            )
            return Applied(outcome, tuple(doing.posted), tuple(doing.holds))

    async def event_outcome(self, event_id: str) -> str | None:
        async with self._sessions() as db:
            return await db.scalar(select(PaymentEvent.outcome).where(PaymentEvent.id == event_id))

    async def ensure_customer(self, user_id: str, provider: str, customer_id: str) -> str:
        """The driver's customer id: the first one stored wins, however many were made."""
        async with self._sessions.begin() as db:
            await db.execute(
                insert_new(db, PaymentCustomer, "user_id").values(
                    user_id=user_id,
                    provider=provider,
                    customer_id=customer_id,
                    default_payment_method="",
                )
            )
            return (await db.get_one(PaymentCustomer, user_id)).customer_id

    async def customer(self, user_id: str) -> CustomerRecord | None:
        async with self._sessions() as db:
            row = await db.get(PaymentCustomer, user_id)
            if row is None:
                return None
            return CustomerRecord(
                row.user_id, row.provider, row.customer_id, row.default_payment_method
            )

    async def methods(self, user_id: str) -> list[PaymentMethodRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(PaymentMethodRow)
                .where(PaymentMethodRow.user_id == user_id)
                .order_by(PaymentMethodRow.created_ms, PaymentMethodRow.id)
            )
            return [PaymentMethodRecord(r.id, r.user_id, r.brand, r.last4) for r in rows]

    async def record_intent(self, intent: PaymentIntentRecord) -> None:
        """A payment we asked the provider for (kept as first recorded if asked again)."""
        async with self._sessions.begin() as db:
            await db.execute(
                insert_new(db, PaymentIntentRow, "id").values(
                    id=intent.id,
                    purpose=intent.purpose,
                    user_id=intent.user_id,
                    amount_cents=intent.amount_cents,
                    currency=intent.currency,
                    status=intent.status,
                    failure=intent.failure,
                    plug_id=intent.plug_id,
                    email=intent.email,
                    captured_cents=intent.captured_cents,
                    created_ms=intent.created_ms,
                    updated_ms=intent.created_ms,
                )
            )

    async def intent(self, payment_intent_id: str) -> PaymentIntentRecord | None:
        async with self._sessions() as db:
            row = await db.get(PaymentIntentRow, payment_intent_id)
            return None if row is None else intent_record(row)

    async def set_captured(self, payment_intent_id: str, cents: int, now_ms: int) -> None:
        async with self._sessions.begin() as db:
            await EventWork(db, now_ms).intent_status(
                payment_intent_id, "captured", captured_cents=cents
            )

    async def set_auto_top_up(self, user_id: str, threshold_cents: int, amount_cents: int) -> None:
        """The driver's auto top-up, switched on (a paused one resumes: the driver acted)."""
        async with self._sessions.begin() as db:
            row = await db.get(AutoTopUp, user_id)
            if row is None:
                db.add(
                    AutoTopUp(
                        user_id=user_id,
                        threshold_cents=threshold_cents,
                        amount_cents=amount_cents,
                        paused_reason="",
                        paused_ms=None,
                    )
                )
            else:
                row.threshold_cents, row.amount_cents = threshold_cents, amount_cents
                row.paused_reason, row.paused_ms = "", None

    async def stop_auto_top_up(self, user_id: str) -> None:
        """The driver switched auto top-up off: no row, no charge."""
        async with self._sessions.begin() as db:
            row = await db.get(AutoTopUp, user_id)
            if row is not None:
                await db.delete(row)

    async def auto_top_up(self, user_id: str) -> AutoTopUpRecord | None:
        async with self._sessions() as db:
            row = await db.get(AutoTopUp, user_id)
            if row is None:
                return None
            return AutoTopUpRecord(
                row.user_id, row.threshold_cents, row.amount_cents, row.paused_reason
            )

    async def pause_auto_top_up(self, user_id: str, reason: str, now_ms: int) -> None:
        async with self._sessions.begin() as db:
            await EventWork(db, now_ms).pause_auto_top_up(user_id, reason)


def intent_record(row: PaymentIntentRow) -> PaymentIntentRecord:
    return PaymentIntentRecord(
        row.id,
        row.purpose,
        row.user_id,
        row.amount_cents,
        row.currency,
        row.status,
        row.created_ms,
        row.failure,
        row.plug_id,
        row.email,
        row.captured_cents,
    )
