"""Outgoing mail: over SMTP when a server is configured, otherwise logged.

The logging mailer is the embedded default: it keeps the last messages, and in the demo only
(``shows_links``) the page shows the link a mail carries, so the demo needs no mail server.
Anywhere else a page showing the link would hand any account to whoever asks for its link.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal, Protocol

import aiosmtplib
import structlog

from evplug import metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    link: str = ""  # the one link the message is about, for the demo to show


class Mailer(Protocol):
    # True when no mail leaves the machine, so the page shows the link itself (the demo).
    shows_links: bool

    async def send(self, mail: Mail) -> None: ...


class LogMailer:
    def __init__(self, shows_links: bool = False, keep: int = 100) -> None:
        self.shows_links = shows_links
        self.sent: deque[Mail] = deque(maxlen=keep)

    async def send(self, mail: Mail) -> None:
        self.sent.append(mail)
        log.info(
            "mail not sent (no SMTP server configured)",
            to=mail.to,
            subject=mail.subject,
            link=mail.link,
        )


def text_sender(mailer: Mailer) -> Callable[[str, str, str], Awaitable[None]]:
    """``send(to, subject, text)`` through ``mailer``: for those who mail without a link."""

    async def send(to: str, subject: str, text: str) -> None:
        await mailer.send(Mail(to, subject, text))

    return send


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    # "starttls" upgrades a plain connection; "tls" connects over TLS (port 465); "none": neither.
    tls: Literal["starttls", "tls", "none"] = "starttls"
    timeout_s: float = 10.0


class SmtpMailer:
    shows_links = False

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    async def send(self, mail: Mail) -> None:
        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.text)
        c = self.config
        try:
            await aiosmtplib.send(
                message,
                hostname=c.host,
                port=c.port,
                username=c.username,
                password=c.password,
                use_tls=c.tls == "tls",
                start_tls=c.tls == "starttls",
                timeout=c.timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            # The request that wanted the mail has been answered already: log it, count it.
            metrics.MAILS_FAILED.inc()
            log.error(
                "mail not sent: check mail.smtp_host, mail.smtp_port and the credentials",
                to=mail.to,
                subject=mail.subject,
                error=f"{type(exc).__name__}: {exc}",
            )
