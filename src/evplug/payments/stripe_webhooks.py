"""Stripe's webhook signature: ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256>`` over
``<t>.<raw body>`` with the endpoint's secret. Verified with the official SDK."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import stripe

# As Stripe's own libraries: an older signature is a replay.
TOLERANCE_S = 300


class BadSignature(ValueError):
    """Not signed with our webhook secret, too old, or not JSON: refused, nothing changed."""


def verify_event(payload: bytes, header: str | None, secret: str) -> dict[str, Any]:
    """The event in ``payload``, once its signature proves it came from Stripe."""
    if not header:
        raise BadSignature("no Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, header, secret, TOLERANCE_S)
        event = json.loads(text)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise BadSignature(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if not isinstance(event, dict):
        raise BadSignature("the body is not a JSON object")
    return event


def sign(payload: bytes, secret: str, timestamp_s: int) -> str:
    """The header Stripe would send with ``payload``: for tests and for replaying by hand."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp_s},v1={mac.hexdigest()}"
