"""One plug as each driver sees it: the figures and the buttons only for the driver whose
session it is, "In use" for everyone else, top up first when the balance cannot start."""

from __future__ import annotations

from evplug.contracts import evplug_pb2 as pb
from evplug.web.plug_view import PlugView, plug_view

CHARGING = pb.PlugStatus(
    plug_id="p",
    site_id="s",
    state="CHARGING",
    prompts=["Disable Socket"],
    active_power_w=7_400.0,
    session_energy_wh=1_250.0,
    session_cost_cents=38,
    session_id="sess",
    session_started_ms=1_000,
    timestamp_ms=61_000,
    actual_state=pb.ACTUAL_STATE_ON,
    currency="AUD",
    price_cents_per_kwh=30,
)
IDLE = pb.PlugStatus(plug_id="p", site_id="s", state="ACCOUNT_NULL", prompts=["Enable Socket"])


def view(status: pb.PlugStatus, owner: str | None, balance: int = 2_000) -> PlugView:
    return plug_view(
        status,
        session_user_id=owner,
        user_id="me",
        site_name="Garage",
        balance_cents=balance,
        min_start_credit_cents=1,
    )


def test_my_session_shows_its_figures_and_its_buttons() -> None:
    mine = view(CHARGING, "me")
    assert (mine.mine, mine.in_use, mine.words) == (True, False, "Charging")
    assert mine.prompts == ["Disable Socket"]
    shown = mine.as_json()
    assert (shown["kw"], shown["kwh"], shown["cost"]) == ("7.40 kW", "1.250 kWh", "$0.38")
    assert shown["elapsed"] == "1 min" and shown["price"] == "$0.30 per kWh"


def test_another_drivers_session_is_in_use_with_no_controls_and_no_figures() -> None:
    for owner in ("someone-else", None):  # None: the session row is not found yet
        theirs = view(CHARGING, owner)
        assert (theirs.mine, theirs.in_use, theirs.words) == (False, True, "In use")
        assert theirs.prompts == []
        assert (theirs.power_w, theirs.energy_wh, theirs.cost_cents) == (0.0, 0.0, 0)
        assert theirs.as_json()["elapsed"] == ""


def test_an_idle_plug_offers_enable_unless_the_balance_is_too_low() -> None:
    free = view(IDLE, None)
    assert (free.in_use, free.prompts, free.top_up_needed) == (False, ["Enable Socket"], False)
    broke = view(IDLE, None, balance=0)
    assert broke.top_up_needed and broke.prompts == []
    assert "top up first" in broke.words


def test_a_relay_that_does_not_answer_says_so() -> None:
    lost = pb.PlugStatus()
    lost.CopyFrom(CHARGING)
    lost.actual_state = pb.ACTUAL_STATE_MIA
    shown = view(lost, "me")
    assert shown.not_responding and shown.words.startswith("Not responding")
    retry = view(
        pb.PlugStatus(
            state="SENSING_START_NOT_RESPONDING",
            session_id="sess",
            prompts=["Request Enable Again", "Disable Socket"],
        ),
        "me",
    )
    assert retry.words == "Not responding — try again"
    assert retry.prompts == ["Request Enable Again", "Disable Socket"]
