"""Account mail over a real SMTP server on loopback (aiosmtpd): the verification link arrives
and works; a server that is down costs the driver nothing but the mail (logged and counted)."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from email.message import Message

import pytest
from aiosmtpd.controller import Controller

from evplug import metrics
from evplug.web.mail import Mail, SmtpConfig, SmtpMailer
from tests.web.conftest import PASSWORD, client_for, token_of
from tests.web.test_events import free_port

pytestmark = pytest.mark.integration


class Inbox:
    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content)
        self.loop.call_soon_threadsafe(self.messages.put_nowait, message)
        return "250 OK"


@pytest.fixture
async def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _mailer(port: int) -> SmtpMailer:
    return SmtpMailer(SmtpConfig("127.0.0.1", port, "evplug <noreply@evplug.test>", tls="none"))


async def test_sign_up_mail_arrives_over_smtp_and_its_link_verifies(
    make_accounts_app, smtp_server
) -> None:
    inbox, port = smtp_server
    async with client_for(make_accounts_app(mailer=_mailer(port))) as client:
        signed_up = await client.post(
            "/api/v1/auth/signup", json={"email": "u@example.com", "password": PASSWORD}
        )
        assert signed_up.status_code == 202 and "demo_link" not in signed_up.json()
        message = await asyncio.wait_for(inbox.messages.get(), 10)
        assert message["To"] == "u@example.com"
        assert message["From"] == "evplug <noreply@evplug.test>"
        assert message["Subject"] == "Verify your evplug email address"
        body = message.get_payload(decode=True).decode()
        link = next(word for word in body.split() if "/verify?token=" in word)
        verified = await client.post("/api/v1/auth/verify", json={"token": token_of(link)})
        assert verified.status_code == 200 and verified.json()["email_verified"] is True


async def test_an_smtp_server_that_is_down_is_logged_and_counted() -> None:
    failed = metrics.MAILS_FAILED._value.get()
    await _mailer(free_port()).send(Mail("v@example.com", "subject", "text"))
    assert metrics.MAILS_FAILED._value.get() == failed + 1
