"""Any interleaving of duplicate and out-of-order webhook deliveries, session closes and auto
top-ups leaves each balance the sum of its ledger, each payment intent credited once, each
refund and each session taken once."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evplug.clock import FakeClock
from evplug.core.plug import Plug, SessionClosed, SessionOpened
from evplug.payments.demo import DemoProvider
from evplug.payments.events import PaymentEvents, intent_event
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository
from tests.payments.conftest import event, intent

TOP_UPS = {f"pi_{n}": 1_000 + 100 * n for n in range(3)}


def _checkout(payment_intent_id: str, cents: int) -> dict[str, Any]:
    return {
        "id": f"cs_{payment_intent_id}",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": payment_intent_id,
        "amount_total": cents,
        "currency": "aud",
        "client_reference_id": "u",
    }


def _refund(payment_intent_id: str, refund_ids: list[str]) -> dict[str, Any]:
    return {
        "id": f"ch_{payment_intent_id}",
        "payment_intent": payment_intent_id,
        "customer": "cus_u",
        "refunds": {"data": [{"id": r, "amount": 150, "status": "succeeded"} for r in refund_ids]},
    }


# Each payment is confirmed by two events (a checkout's completion, its intent's success); one
# is refunded twice, the second event listing both refunds, as Stripe's does.
WEBHOOKS = [
    *(event(f"evt_pi_{p}", "payment_intent.succeeded", intent(p, c)) for p, c in TOP_UPS.items()),
    *(
        event(f"evt_cs_{p}", "checkout.session.completed", _checkout(p, c))
        for p, c in TOP_UPS.items()
    ),
    event("evt_re_1", "charge.refunded", _refund("pi_0", ["re_1"])),
    event("evt_re_2", "charge.refunded", _refund("pi_0", ["re_1", "re_2"])),
]
REFUNDS = {"re_1": 150, "re_2": 150}

steps = st.lists(
    st.one_of(
        st.tuples(st.just("webhook"), st.integers(0, len(WEBHOOKS) - 1)),
        st.tuples(st.just("close"), st.integers(0, 3), st.integers(0, 900)),
        st.tuples(st.just("auto"), st.integers(0, 2)),
        st.tuples(st.just("auto_webhook"), st.integers(0, 2)),
    ),
    max_size=30,
)


async def _with_repo(work: Callable[[Repository], Awaitable[None]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(sqlite_url(Path(tmp) / "ledger.sqlite3"))
        await create_schema(engine)
        repo = Repository(engine)
        await repo.sites.ensure_site("site", "Site", 30, "AUD")
        await repo.users.ensure_user("u", "Driver", "d@example.invalid")
        await repo.payments.ensure_customer("u", "demo", "cus_u")
        await repo.sites.register_plug("p", "site", "f", "sim", Plug("p", "f").snapshot())
        try:
            await work(repo)
        finally:
            await engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_any_interleaving_keeps_the_balance_the_sum_and_credits_each_payment_once(
    sequence: list[tuple[Any, ...]],
) -> None:
    async def check(repo: Repository) -> None:
        clock = FakeClock()
        events, demo = PaymentEvents(repo, clock), DemoProvider(repo, clock)
        credited: dict[str, int] = {}
        refunded: set[str] = set()
        billed: dict[int, int] = {}
        snapshot = Plug("p", "f").snapshot()
        for step in sequence:
            if step[0] == "webhook":
                hook = WEBHOOKS[step[1]]
                await events.process(hook)
                obj = hook["data"]["object"]
                if hook["type"] == "charge.refunded":
                    refunded.update(r["id"] for r in obj["refunds"]["data"])
                else:
                    pi = obj.get("payment_intent") or obj["id"]
                    credited.setdefault(pi, TOP_UPS[pi])
            elif step[0] == "close":
                _, number, cost = step
                session_id = f"s{number}"
                if await repo.sessions.get_session(session_id) is None:
                    opened = SessionOpened(session_id, "p", "u", 1, 30)
                    await repo.sessions.open_session(opened, snapshot)
                closed = SessionClosed(session_id, "p", "u", 1, 2, cost / 30 * 1000, cost, 30, "x")
                await repo.sessions.close_session(closed, snapshot)
                billed.setdefault(number, cost)
            else:  # an auto top-up: charged at once (applied), or its webhook (late or early)
                charge = await demo.charge_off_session("u", 2_000, "AUD", f"auto:u:{step[1]}")
                if step[0] == "auto":
                    sync = intent_event(
                        f"sync_{charge.payment_intent_id}",
                        "payment_intent.succeeded",
                        charge.intent,
                    )
                    await events.process(sync)
                else:
                    hook = event(
                        f"evt_{charge.payment_intent_id}", "payment_intent.succeeded", charge.intent
                    )
                    await events.process(hook)
                credited.setdefault(charge.payment_intent_id, 2_000)

        expected = sum(credited.values()) - sum(REFUNDS[r] for r in refunded) - sum(billed.values())
        assert await repo.ledger.balance("u") == expected == await repo.ledger.ledger_sum("u")
        assert await repo.ledger.mismatches() == []
        keys = [e.idempotency_key for e in await repo.ledger.entries("u")]
        assert len(keys) == len(set(keys)) == len(credited) + len(refunded) + len(billed)

    asyncio.run(_with_repo(check))
