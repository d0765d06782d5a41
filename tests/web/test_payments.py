"""The money routes over ASGI: the Stripe webhook's signature, the demo checkout's ledger path,
the driver's money operations on /api/v1 handing off to it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from evplug.bus.base import Message
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.payments.demo import DemoProvider
from evplug.payments.stripe_webhooks import sign
from evplug.store.repository import Repository
from evplug.web.app import create_app
from evplug.web.mail import LogMailer
from tests.payments.conftest import event, intent
from tests.store.conftest import bare_engine, database_url, engine, repo
from tests.web.conftest import accounts_config, as_driver, client_for

__all__ = ["bare_engine", "database_url", "engine", "repo"]

SECRET = "whsec_test_secret"


class Web:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.clock = FakeClock()
        self.bus = MemoryBus(self.clock)
        self.changes: list[pb.BalanceChanged] = []
        self.mailer = LogMailer()
        accounts = accounts_config(clock=self.clock, mailer=self.mailer)
        provider = DemoProvider(repo, self.clock)
        self.app = create_app(self.bus, repo, None, accounts, provider, SECRET)
        as_driver(self.app, "u")

    async def on_change(self, msg: Message) -> None:
        self.changes.append(unpack(msg.data, pb.BalanceChanged))
        await msg.ack()


@pytest.fixture
async def web(repo: Repository) -> AsyncIterator[tuple[Web, httpx.AsyncClient]]:
    site = Web(repo)
    await repo.users.ensure_user("u", "Driver", "u@example.invalid")
    await site.bus.subscribe(subjects.BALANCE_CHANGED, "test", site.on_change)
    async with client_for(site.app) as client:
        yield site, client
    await site.bus.close()


def signed(body: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(body).encode()
    return payload, {"Stripe-Signature": sign(payload, secret, int(time.time()))}


async def test_a_signed_webhook_credits_once_and_tells_the_mothership(web) -> None:
    site, client = web
    payload, headers = signed(event("evt_1", "payment_intent.succeeded", intent("pi_1", 2_000)))
    first = await client.post("/webhooks/stripe", content=payload, headers=headers)
    again = await client.post("/webhooks/stripe", content=payload, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["applied"] and not again.json()["applied"]
    assert await site.repo.ledger.balance("u") == 2_000
    assert [(c.user_id, c.ledger_key) for c in site.changes] == [("u", "pi:pi_1")]


@pytest.mark.parametrize(
    "forge",
    [
        lambda p, h: (p, {"Stripe-Signature": sign(p, "whsec_someone_else", int(time.time()))}),
        lambda p, h: (p.replace(b"2000", b"9000"), h),  # the amount changed after signing
        lambda p, h: (p, {"Stripe-Signature": sign(p, SECRET, int(time.time()) - 3_600)}),
        lambda p, h: (p, {}),
    ],
    ids=["other-secret", "tampered", "replayed-an-hour-later", "unsigned"],
)
async def test_a_forged_webhook_gets_400_and_changes_nothing(web, forge) -> None:
    site, client = web
    payload, headers = forge(
        *signed(event("evt_1", "payment_intent.succeeded", intent("pi_1", 2_000)))
    )
    refused = await client.post("/webhooks/stripe", content=payload, headers=headers)
    assert refused.status_code == 400 and "refused" in refused.json()["detail"]
    assert await site.repo.ledger.ledger_sum("u") == 0
    assert await site.repo.payments.event_outcome("evt_1") is None
    assert site.changes == []


async def test_a_signed_event_of_a_type_we_do_not_handle_is_acknowledged(web) -> None:
    _, client = web
    payload, headers = signed(event("evt_9", "invoice.created", {"id": "in_1"}))
    done = await client.post("/webhooks/stripe", content=payload, headers=headers)
    assert done.status_code == 200 and done.json()["applied"] is False


async def test_the_demo_checkout_is_labelled_and_credits_through_the_ledger(web) -> None:
    site, client = web
    small = await client.post("/api/v1/top-ups", json={"amount_cents": 999})
    assert small.status_code == 422
    started = await client.post("/api/v1/top-ups", json={"amount_cents": 1_500})
    url = started.json()["redirect_url"]
    assert url.startswith("/pay/demo/demo_pi_") and url.endswith("?return_to=/money")
    page = await client.get(url)
    assert page.status_code == 200 and "demo — no money moves" in page.text
    assert "15.00 AUD" in page.text
    paid = await client.post(url, follow_redirects=False)
    assert paid.status_code == 303 and paid.headers["location"] == "/money"
    evil = await client.get(url.replace("/money", "https://evil.example/"))
    assert 'action="?return_to=/"' in evil.text  # back only to a page of this site
    await client.post(url, follow_redirects=False)  # pressed twice: credited once
    assert await site.repo.ledger.balance("u") == 1_500
    (entry,) = await site.repo.ledger.entries("u")
    assert entry.idempotency_key == "pi:" + url.removeprefix("/pay/demo/").split("?")[0]
    assert [c.user_id for c in site.changes] == ["u"]


async def test_a_demo_checkout_is_only_its_drivers(web) -> None:
    site, client = web
    await site.repo.users.ensure_user("v", "Other", "v@example.invalid")
    redirect = await DemoProvider(site.repo, site.clock).start_top_up("v", 2_000, "AUD", "/")
    assert (await client.get(redirect.url)).status_code == 404
    assert (await client.post(redirect.url)).status_code == 404
    assert await site.repo.ledger.ledger_sum("v") == 0


@pytest.mark.parametrize("answer", ["ok", "refused"])
async def test_a_guests_card_hold_starts_the_socket_or_is_released(web, answer: str) -> None:
    site, client = web
    asked: list[pb.DriverRequest] = []

    async def mothership(subject: str, data: bytes) -> bytes:
        asked.append(unpack(data, pb.DriverRequest))
        if answer == "ok":
            return pack(pb.DriverReply(code=pb.DriverReplyCode.DRIVER_REPLY_CODE_OK))
        refused = pb.DriverReplyCode.DRIVER_REPLY_CODE_REFUSED
        return pack(pb.DriverReply(code=refused, reason="this socket is in use"))

    await site.bus.serve(subjects.for_site(subjects.DRIVER, "site"), mothership)
    as_driver(site.app, None)  # a visitor without an account
    missing = await client.post("/api/v1/plugs/nope/guest-holds", json={"amount_cents": 1_000})
    assert missing.status_code == 404
    started = await client.post(
        "/api/v1/plugs/p/guest-holds", json={"amount_cents": 1_000, "email": "g@example.invalid"}
    )
    assert started.json()["follow_url"] == "/plug/p"
    url = started.json()["redirect_url"]
    assert "demo — no money moves" in (await client.get(url)).text
    await client.post(url, follow_redirects=False)
    hold_id = url.removeprefix("/pay/demo/").split("?")[0]
    (request,) = asked
    assert (request.plug_id, request.user_id) == ("p", f"guest-{hold_id}")
    hold = await site.repo.payments.intent(hold_id)
    balance = await site.repo.ledger.balance(f"guest-{hold_id}")
    if answer == "ok":
        assert balance == 1_000 and hold is not None and hold.captured_cents is None
        assert not site.mailer.sent
    else:  # not started: nothing taken, the hold released, the guest told by mail
        assert balance == 0 and hold is not None and hold.captured_cents == 0
        (mail,) = site.mailer.sent
        assert (mail.to, mail.subject) == ("g@example.invalid", "Your charging receipt")
