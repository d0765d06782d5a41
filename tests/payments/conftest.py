"""Payments tests run their store on SQLite and on PostgreSQL, as the store's own tests do."""

from __future__ import annotations

from typing import Any

from tests.store.conftest import bare_engine, database_url, engine, repo

__all__ = ["bare_engine", "database_url", "engine", "repo"]


def intent(
    intent_id: str, cents: int, user_id: str = "u", purpose: str = "top_up", **more: Any
) -> dict[str, Any]:
    """A payment intent as Stripe sends it in an event."""
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": cents,
        "amount_received": cents,
        "currency": "aud",
        "status": "succeeded",
        "metadata": {"user_id": user_id, "purpose": purpose},
        **more,
    }


def event(event_id: str, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "type": event_type, "data": {"object": obj}}
