"""Sending one email. The accounts part owns mail delivery (SMTP settings, templates); until it
is wired here, a message is logged with its recipient, never dropped without a trace."""

from __future__ import annotations

import structlog

log = structlog.get_logger(__name__)


async def send_mail(to: str, subject: str, body: str) -> None:
    log.info("mail.not_sent", to=to, subject=subject, chars=len(body), fix="wire SMTP sending")
