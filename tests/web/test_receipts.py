"""Receipts of the signed-in driver's top-ups and sessions: printable HTML and PDF."""

from __future__ import annotations

from fastapi import FastAPI

from evplug.core import ledger
from evplug.core.plug import Plug, SessionClosed, SessionOpened
from evplug.payments.receipts import money
from evplug.store.repository import Repository
from evplug.web.receipts import receipts_router
from tests.store.conftest import bare_engine, database_url, engine, repo
from tests.web.conftest import as_driver, client_for

__all__ = ["bare_engine", "database_url", "engine", "repo"]


def app_for(repo: Repository, driver: str) -> FastAPI:
    app = as_driver(FastAPI(), driver)
    app.include_router(receipts_router(repo))
    return app


async def test_a_session_and_a_top_up_have_receipts_only_their_driver_sees(
    repo: Repository,
) -> None:
    await repo.ledger.post(ledger.top_up("u", "pi_1", 2_000, 1_796_000_000_000))
    snapshot = Plug("p", "f").snapshot()
    await repo.sessions.open_session(SessionOpened("s1", "p", "u", 10, 30), snapshot)
    await repo.sessions.close_session(
        SessionClosed("s1", "p", "u", 10, 3_600_010, 7_350.0, 221, 30, "complete"), snapshot
    )
    async with client_for(app_for(repo, "u")) as client:
        page = await client.get("/receipts/sessions/s1")
        assert page.status_code == 200
        for shown in (
            "7.350 kWh",
            "30 c/kWh",
            "2.21 AUD",
            "half up",
            '"/receipts/sessions/s1.pdf"',
        ):
            assert shown in page.text
        pdf = await client.get("/receipts/sessions/s1.pdf")
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF") and len(pdf.content) > 500
        top_up = await client.get("/receipts/top-ups/pi_1")
        assert "20.00 AUD" in top_up.text and "Top-up" in top_up.text
        assert (await client.get("/receipts/top-ups/pi_1.pdf")).content.startswith(b"%PDF")
        assert (await client.get("/receipts/top-ups/pi_9")).status_code == 404
    await repo.users.ensure_user("v", "Other", "v@example.invalid")
    async with client_for(app_for(repo, "v")) as client:
        assert (await client.get("/receipts/sessions/s1")).status_code == 404
        assert (await client.get("/receipts/top-ups/pi_1.pdf")).status_code == 404


def test_money_is_shown_from_whole_cents() -> None:
    assert [money(c, "AUD") for c in (0, 5, 221, -1_050)] == [
        "0.00 AUD",
        "0.05 AUD",
        "2.21 AUD",
        "-10.50 AUD",
    ]
