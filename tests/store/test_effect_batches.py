"""Many plugs' effects in one batch, on both stores: all or nothing, and idempotent."""

from __future__ import annotations

import pytest

from evplug.core import ledger
from evplug.core.plug import Plug, SessionClosed, SessionOpened, State, Transitioned, Trigger
from evplug.store.effect_batches import PlugWrite
from evplug.store.repository import Repository

DRAWING = Trigger.CAR_DRAWING


async def test_a_batch_written_twice_is_applied_once(repo: Repository) -> None:
    await repo.sites.register_plug("q", "site", "f", "sim", Plug("q", "f").snapshot())
    await repo.ledger.post(ledger.top_up("u", "pi_1", 1000, 1))
    charging = Plug("p", "f")
    charging.state = State.CHARGING
    batch = [
        PlugWrite(
            "p",
            [
                SessionOpened("s1", "p", "u", 10, 30),
                Transitioned(
                    "p", State.ACCOUNT_NULL, State.CHARGING, Trigger.CAR_DRAWING, 10, "s1"
                ),
                SessionClosed("s1", "p", "u", 10, 20, 1500.0, 45, 30, "complete"),
            ],
            charging.snapshot(),
        ),
        PlugWrite("q", [], Plug("q", "f").snapshot()),
    ]
    assert await repo.effects.write(batch, 30) == {"s1": 955}
    assert await repo.effects.write(batch, 40) == {}  # a retry: billed before, nothing again
    assert await repo.ledger.balance("u") == 955 == await repo.ledger.ledger_sum("u")
    stored = {r.id: r for r in await repo.sites.load_plugs()}
    assert stored["p"].state == "CHARGING" and stored["p"].snapshot == charging.snapshot()


async def test_a_batch_the_store_refuses_writes_nothing(repo: Repository) -> None:
    opened = PlugWrite("p", [SessionOpened("s1", "p", "u", 10, 30)], Plug("p", "f").snapshot())
    never_opened = PlugWrite(
        "p", [SessionClosed("s9", "p", "u", 10, 20, 1.0, 1, 30, "complete")], {"plug_id": "p"}
    )
    with pytest.raises(LookupError, match="never opened"):
        await repo.effects.write([opened, never_opened], 30)
    assert await repo.sessions.get_session("s1") is None  # all or nothing
