"""One account, several sessions: the balance they share, and auto top-up during a session."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from evplug.clock import settle
from evplug.core.plug import Prompt, State
from evplug.mothership.accounts import Accounts
from evplug.payments.auto_top_up import AutoTopUps
from evplug.payments.demo import DemoProvider
from evplug.payments.events import PaymentEvents
from evplug.payments.guest import GuestHolds
from evplug.payments.provider import Charge
from evplug.web.mail import LogMailer, text_sender
from tests.mothership.conftest import MakeSite
from tests.mothership.harness import Site, restart


class CountingProvider(DemoProvider):
    """The demo provider, counting the off-session charges it is asked for."""

    def __init__(self, *args: Any, decline: str = "") -> None:
        super().__init__(*args)
        self.asked: list[str] = []
        self.decline = decline

    async def charge_off_session(
        self, user_id: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        self.asked.append(idempotency_key)
        if self.decline:
            return Charge(
                "pi_declined", self.decline, "Your card was declined. (card_declined)", {}
            )
        return await super().charge_off_session(user_id, amount_cents, currency, idempotency_key)


def with_auto_top_up(site: Site, decline: str = "") -> CountingProvider:
    provider = CountingProvider(site.repo, site.clock, decline=decline)
    events = PaymentEvents(site.repo, site.clock)
    site.ms.accounts.top_ups = AutoTopUps(provider, events, site.clock)
    return provider


async def start_both(site: Site, user_id: str) -> None:
    for plug_id in site.plug_ids:
        site.sockets[plug_id].power_w = 2300.0
        await site.enable(plug_id, user_id)
    await site.answer()


async def run_until_both_stop(site: Site, max_reads: int = 400) -> None:
    for _ in range(max_reads):
        await site.advance(10)
        await site.read(10)
        await settle()
        await site.answer()
        if all(site.ms.plug(p).state is State.ACCOUNT_NULL for p in site.plug_ids):
            return


async def test_two_sessions_of_one_account_together_never_overdraw_it(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    await site.add_driver("d", credit_cents=100)  # ~3.3 kWh at 30 c/kWh, for two cars
    await start_both(site, "d")
    await run_until_both_stop(site)
    sessions = await site.repo.sessions.sessions_of_user("d")
    assert len(sessions) == 2
    assert {s.end_reason for s in sessions} == {"insufficient_credit"}
    spent = sum(s.cost_cents or 0 for s in sessions)
    # 10 s readings at 2300 W: each may overrun its limit by at most one reading (~0.2 c).
    assert 98 <= spent <= 101
    assert await site.repo.ledger.balance("d") >= -1


async def test_a_second_session_starts_only_on_what_the_first_has_not_spent(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    await site.add_driver("d", credit_cents=100)
    first, second = site.plug_ids
    site.sockets[first].power_w = 2300.0
    await site.enable(first, "d")
    await site.answer()
    for _ in range(6):  # 2300 W for 30 min: ~34.5 c
        await site.advance(300)
        await site.read(300)
    await site.enable(second, "d")
    assert site.ms.plug(second).credit_cents == 100 - site.ms.plug(first).session_cost_cents


async def test_auto_top_up_during_a_session_charges_once_for_two_plugs_crossing(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    provider = with_auto_top_up(site)
    await site.add_driver("d", credit_cents=100)
    await site.repo.payments.set_auto_top_up("d", 50, 2_000)
    await start_both(site, "d")
    for _ in range(180):  # 30 min of two cars: ~69 c, crossing below 50 c left on the way
        await site.advance(10)
        await site.read(10)
        await settle()
        await site.answer()  # the second plug is switched on a few seconds after the first
    assert len(provider.asked) == 1
    entries = await site.repo.ledger.entries("d")
    assert [e.kind for e in entries] == ["adjustment", "top_up"]
    assert await site.repo.ledger.balance("d") == 2_100
    for plug_id in site.plug_ids:  # neither was cut short: their credit rose with the top-up
        plug = site.ms.plug(plug_id)
        assert plug.state is State.CHARGING and plug.credit_cents > 2_000


async def test_a_declined_auto_top_up_pauses_and_the_session_runs_until_the_money_does(
    make_site: MakeSite,
) -> None:
    site = await make_site(plugs=1)
    provider = with_auto_top_up(site, decline="declined")
    await site.add_driver("d", credit_cents=100)
    await site.repo.payments.set_auto_top_up("d", 50, 2_000)
    plug_id = site.plug_ids[0]
    site.sockets[plug_id].power_w = 2300.0
    await site.enable(plug_id, "d")
    await site.answer()
    for _ in range(280):  # 47 min: ~54 c, below the 50 c threshold, not yet out of money
        await site.advance(10)
        await site.read(10)
        await settle()
    auto = await site.repo.payments.auto_top_up("d")
    assert auto is not None
    assert auto.paused_reason == "auto top-up declined: Your card was declined. (card_declined)"
    assert site.ms.plug(plug_id).state is State.CHARGING
    await run_until_both_stop(site)
    (session,) = await site.repo.sessions.sessions_of_user("d")
    assert session.end_reason == "insufficient_credit" and 99 <= (session.cost_cents or 0) <= 101
    assert len(provider.asked) == 1  # paused: not asked again at every reading


async def test_two_motherships_crossing_at_once_ask_for_one_charge(make_site: MakeSite) -> None:
    """Two processes see the account cross together: they ask under one idempotency key, so
    the card is charged once (the provider dedupes by key, the ledger by payment intent)."""
    site = await make_site(plugs=1)
    provider = with_auto_top_up(site)
    other = Accounts(
        site.ms.registry, site.repo, site.clock, site.ms.apply, site.ms.accounts.top_ups
    )
    await site.add_driver("d", credit_cents=100)
    await site.repo.payments.set_auto_top_up("d", 150, 2_000)  # due from the start
    plug_id = site.plug_ids[0]
    site.sockets[plug_id].power_w = 2300.0
    await site.enable(plug_id, "d")
    await site.answer()
    await asyncio.gather(site.ms.accounts.check("d"), other.check("d"), site.ms.accounts.check("d"))
    await site.ms.accounts.drain()
    await other.drain()
    assert len(provider.asked) == 2 and len(set(provider.asked)) == 1
    assert [e.kind for e in await site.repo.ledger.entries("d")] == ["adjustment", "top_up"]
    assert await site.repo.ledger.balance("d") == 2_100


class HoldingProvider(DemoProvider):
    """The demo provider, keeping what each hold was captured for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.captured: dict[str, int] = {}

    async def capture_hold(self, payment_intent_id: str, cents: int) -> None:
        self.captured[payment_intent_id] = cents


async def guest_with_hold(site: Site, cents: int) -> tuple[HoldingProvider, str, str]:
    """A guest's authorized hold on the site's first plug: (provider, hold id, guest id)."""
    provider = HoldingProvider(site.repo, site.clock)
    site.ms.accounts.guests = GuestHolds(provider, site.repo, site.clock, text_sender(LogMailer()))
    plug_id = site.plug_ids[0]
    redirect = await provider.start_guest_hold(plug_id, cents, "AUD", "g@example.invalid", "/")
    hold_id = redirect.url.removeprefix("/pay/demo/").split("?")[0]
    processed = await PaymentEvents(site.repo, site.clock).process(await provider.pay("", hold_id))
    ((_, held_plug, guest),) = processed.holds
    assert held_plug == plug_id and await site.repo.ledger.balance(guest) == cents
    return provider, hold_id, guest


async def test_a_guest_session_stops_when_its_cost_reaches_the_hold(make_site: MakeSite) -> None:
    site = await make_site(plugs=1)
    provider, hold_id, guest = await guest_with_hold(site, 500)
    plug_id = site.plug_ids[0]
    site.sockets[plug_id].power_w = 7000.0
    await site.enable(plug_id, guest)  # as the web does once the hold is authorized
    await site.answer()
    await run_until_both_stop(site, max_reads=2_000)
    await site.ms.accounts.drain()
    (session,) = await site.repo.sessions.sessions_of_user(guest)
    assert session.end_reason == "insufficient_credit"
    assert 500 <= (session.cost_cents or 0) <= 501  # one 10 s reading past it at most
    assert provider.captured == {hold_id: 500}  # never more than the hold


async def test_a_guest_who_stops_early_pays_exactly_the_cost_and_the_rest_is_released(
    make_site: MakeSite,
) -> None:
    site = await make_site(plugs=1)
    provider, hold_id, guest = await guest_with_hold(site, 2_000)
    plug_id = site.plug_ids[0]
    site.sockets[plug_id].power_w = 2300.0
    await site.enable(plug_id, guest)
    await site.answer()
    for _ in range(6):
        await site.advance(300)
        await site.read(300)
    await site.ms.choose(plug_id, Prompt.DISABLE_SOCKET, guest)
    await site.answer()
    await site.advance(2)
    await site.read()
    await settle()
    await site.ms.accounts.drain()
    (session,) = await site.repo.sessions.sessions_of_user(guest)
    cost = session.cost_cents or 0
    assert 0 < cost < 2_000 and provider.captured == {hold_id: cost}
    assert [e.kind for e in await site.repo.ledger.entries(guest)] == [
        "top_up",
        "session_charge",
        "refund",
    ]
    assert await site.repo.ledger.balance(guest) == 0
    hold = await site.repo.payments.intent(hold_id)
    assert hold is not None and (hold.status, hold.captured_cents) == ("captured", cost)


async def test_telemetry_is_stored_and_acked_while_a_balance_read_is_slow(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sharing a balance out may read the store; the telemetry handler never waits for it."""
    site = await make_site()
    await site.add_driver("d", credit_cents=100)
    await start_both(site, "d")
    for _ in range(5):
        await site.advance(60)
        await site.read(60)
        await site.answer()
    first, second = site.plug_ids
    assert {site.ms.plug(p).state for p in site.plug_ids} == {State.CHARGING}
    site = await restart(site)  # a new mothership: it has read no balance yet
    shared_before = site.ms.plug(second).credit_cents
    reading = asyncio.Event()
    slow = asyncio.Event()
    real_balance = site.repo.ledger.balance

    async def slow_read(*_: object) -> dict[str, int]:
        reading.set()
        await slow.wait()
        return {"d": await real_balance("d")}

    monkeypatch.setattr(site.repo.ledger, "balances", slow_read, raising=False)
    monkeypatch.setattr(site.repo.ledger, "balance", slow_read)
    await site.advance(60)
    message = await asyncio.wait_for(site.read(60), timeout=5)
    assert message.acked and reading.is_set()
    assert site.ms.plug(second).credit_cents == shared_before  # not yet shared out anew
    slow.set()
    await site.ms.accounts.drain()
    cost = site.ms.plug(first).session_cost_cents
    assert site.ms.plug(second).credit_cents == 100 - cost < shared_before


async def test_when_one_of_two_sessions_ends_the_other_may_spend_the_whole_balance(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    await site.add_driver("d", credit_cents=100)
    await start_both(site, "d")
    for _ in range(4):
        await site.advance(60)
        await site.read(60)
        await site.answer()
    first, second = site.plug_ids
    await site.ms.choose(first, Prompt.DISABLE_SOCKET, "d")
    await site.answer()
    await site.advance(2)
    await site.read()
    await site.answer()
    await site.ms.accounts.drain()
    assert site.ms.plug(first).state is State.ACCOUNT_NULL
    balance = await site.repo.ledger.balance("d")
    assert balance < 100 and site.ms.plug(second).credit_cents == balance
