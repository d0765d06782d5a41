"""Payments tests run their store on SQLite and on PostgreSQL, as the store's own tests do."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from evplug.bus.broker import free_port
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


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """A real localstripe (a Stripe-compatible server) on a free loopback port for the run."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.payments.localstripe_server", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate()
                pytest.fail(
                    f"localstripe did not start on 127.0.0.1:{port}: {err.decode()[-500:]} (the"
                    " dev extras bring it: pip install -e '.[dev]')",
                    pytrace=False,
                )
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)
