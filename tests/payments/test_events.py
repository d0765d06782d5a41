"""Provider events applied to the store: each event once, each payment intent credited once."""

from __future__ import annotations

import asyncio

import pytest

from evplug.clock import FakeClock
from evplug.payments.events import PaymentEventError, PaymentEvents
from evplug.store.database import make_engine
from evplug.store.records import PaymentIntentRecord
from evplug.store.repository import Repository
from tests.payments.conftest import event, intent


@pytest.fixture
def events(repo: Repository) -> PaymentEvents:
    return PaymentEvents(repo, FakeClock())


async def test_a_replayed_payment_is_credited_once(events: PaymentEvents) -> None:
    succeeded = event("evt_1", "payment_intent.succeeded", intent("pi_1", 2_000))
    first = await events.process(succeeded)
    again = await events.process(succeeded)
    assert first.first_time and first.posted == (("u", "pi:pi_1"),)
    assert not again.first_time and again.posted == ()
    ledger = events.repo.ledger
    assert await ledger.balance("u") == 2_000 == await ledger.ledger_sum("u")


async def test_two_events_confirming_one_payment_credit_it_once(events: PaymentEvents) -> None:
    """A checkout's completion and its intent's success, in either order, or a later resend
    under a new event id: one credit, keyed on the payment intent."""
    checkout = {
        "id": "cs_1",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": "pi_1",
        "amount_total": 2_000,
        "currency": "aud",
        "client_reference_id": "u",
        "metadata": {"user_id": "u", "purpose": "top_up"},
    }
    await events.process(event("evt_2", "payment_intent.succeeded", intent("pi_1", 2_000)))
    late = await events.process(event("evt_1", "checkout.session.completed", checkout))
    resent = await events.process(event("evt_3", "payment_intent.succeeded", intent("pi_1", 2_000)))
    assert late.first_time and late.posted == () and "credited before" in late.outcome
    assert resent.posted == ()
    assert await events.repo.ledger.balance("u") == 2_000


async def test_a_payment_for_no_driver_we_know_changes_nothing_and_says_so(
    events: PaymentEvents,
) -> None:
    stranger = intent("pi_1", 500, user_id="x")
    done = await events.process(event("evt_1", "payment_intent.succeeded", stranger))
    assert done.outcome.startswith("ignored") and done.posted == ()
    assert await events.repo.payments.event_outcome("evt_1") == done.outcome
    assert await events.repo.ledger.ledger_sum("u") == 0


async def test_an_unreadable_event_is_refused_and_a_good_delivery_later_applies(
    events: PaymentEvents,
) -> None:
    broken = intent("pi_1", 2_000)
    del broken["amount"], broken["amount_received"]
    with pytest.raises(PaymentEventError, match="amount"):
        await events.process(event("evt_1", "payment_intent.succeeded", broken))
    with pytest.raises(PaymentEventError, match="not an event"):
        await events.process({"id": "evt_2"})
    assert await events.repo.payments.event_outcome("evt_1") is None
    await events.process(event("evt_1", "payment_intent.succeeded", intent("pi_1", 2_000)))
    assert await events.repo.ledger.balance("u") == 2_000


async def test_an_unhandled_type_changes_nothing(events: PaymentEvents) -> None:
    done = await events.process(event("evt_1", "invoice.created", {"id": "in_1"}))
    assert not done.first_time and done.outcome == "not a type evplug handles"
    assert await events.repo.payments.event_outcome("evt_1") is None


async def test_a_declined_auto_top_up_pauses_it_with_the_reason(events: PaymentEvents) -> None:
    repo = events.repo
    await repo.payments.set_auto_top_up("u", 500, 2_000)
    await repo.payments.record_intent(
        PaymentIntentRecord("pi_auto", "auto_top_up", "u", 2_000, "AUD", "created", 0)
    )
    failed = intent(
        "pi_auto",
        2_000,
        purpose="auto_top_up",
        status="requires_payment_method",
        last_payment_error={
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        },
    )
    done = await events.process(event("evt_1", "payment_intent.payment_failed", failed))
    assert "paused" in done.outcome
    auto = await repo.payments.auto_top_up("u")
    assert auto is not None
    assert auto.paused_reason == "Your card has insufficient funds. (insufficient_funds)"
    recorded = await repo.payments.intent("pi_auto")
    assert recorded is not None and recorded.status == "failed"
    await repo.payments.set_auto_top_up("u", 500, 2_000)  # the driver fixed their card
    resumed = await repo.payments.auto_top_up("u")
    assert resumed is not None and resumed.paused_reason == ""


async def test_a_refund_takes_its_amount_once_naming_who_and_why(events: PaymentEvents) -> None:
    await events.process(event("evt_1", "payment_intent.succeeded", intent("pi_1", 2_000)))
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_1",
        "amount_refunded": 700,
        "refunds": {"data": [{"id": "re_1", "amount": 700, "status": "succeeded"}]},
    }
    await events.process(event("evt_2", "charge.refunded", charge))
    charge["refunds"]["data"].append({"id": "re_2", "amount": 300, "reason": "duplicate"})
    second = await events.process(event("evt_3", "charge.refunded", charge))
    assert second.posted == (("u", "refund:re_2"),)
    assert await events.repo.ledger.balance("u") == 1_000
    refund = (await events.repo.ledger.entries("u"))[-1]
    assert (refund.actor, refund.memo) == (
        "payments provider",
        "refunded at the provider: duplicate",
    )


async def test_cards_follow_the_provider(events: PaymentEvents) -> None:
    repo = events.repo
    await repo.payments.ensure_customer("u", "stripe", "cus_1")
    card = {"id": "pm_1", "customer": "cus_1", "card": {"brand": "visa", "last4": "4242"}}
    await events.process(event("evt_1", "payment_method.attached", card))
    customer = {"id": "cus_1", "invoice_settings": {"default_payment_method": "pm_1"}}
    await events.process(event("evt_2", "customer.updated", customer))
    stored = await repo.payments.customer("u")
    assert stored is not None and stored.default_payment_method == "pm_1"
    assert [(m.brand, m.last4) for m in await repo.payments.methods("u")] == [("visa", "4242")]
    await events.process(event("evt_3", "payment_method.detached", {"id": "pm_1"}))
    stored = await repo.payments.customer("u")
    assert await repo.payments.methods("u") == [] and stored and stored.default_payment_method == ""
    stranger = {"id": "pm_2", "customer": "cus_other", "card": {}}
    done = await events.process(event("evt_4", "payment_method.attached", stranger))
    assert done.outcome.startswith("ignored")


async def test_one_event_delivered_to_two_processes_at_once_applies_once(
    repo: Repository,
) -> None:
    other_engine = make_engine(repo.engine.url)
    try:
        other = Repository(other_engine)
        pair = [PaymentEvents(repo, FakeClock()), PaymentEvents(other, FakeClock())]
        deliveries = [
            event(f"evt_{n}", "payment_intent.succeeded", intent(f"pi_{n}", 1_000 + n))
            for n in range(10)
        ]
        results = await asyncio.gather(*(e.process(d) for d in deliveries for e in pair))
    finally:
        await other_engine.dispose()
    assert [r.first_time for r in results].count(True) == 10
    assert await repo.ledger.balance("u") == sum(1_000 + n for n in range(10))
    assert await repo.ledger.mismatches() == []
