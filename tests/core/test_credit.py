"""The account-wide credit rule: sessions sharing one balance stop together at it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from evplug.core import credit
from evplug.core.pricing import affordable_wh

sessions = st.lists(
    st.builds(
        credit.OpenSession,
        plug_id=st.sampled_from(["a", "b", "c", "d"]),
        energy_wh=st.floats(0, 50_000),
        price_cents_per_kwh=st.integers(1, 200),
    ),
    max_size=4,
    unique_by=lambda s: s.plug_id,
)


@given(st.integers(0, 100_000), sessions)
def test_no_session_may_go_on_once_together_they_have_spent_the_balance(
    balance: int, open_sessions: list[credit.OpenSession]
) -> None:
    credits = credit.session_credits(balance, open_sessions)
    spent = sum(s.accrued_cents for s in open_sessions)
    for s in open_sessions:
        may_go_on = s.energy_wh < affordable_wh(credits[s.plug_id], s.price_cents_per_kwh)
        if spent >= balance + 1:  # past the balance (beyond rounding): every one of them stops
            assert not may_go_on
    assert credit.available_cents(balance, open_sessions) == balance - spent


def test_a_crossing_is_one_key_until_the_account_is_credited_again() -> None:
    first = credit.top_up_key("d", 500, "adjustment:start")
    assert first == credit.top_up_key("d", 500, "adjustment:start")
    assert first != credit.top_up_key("d", 500, "pi:pi_1")
    two = [credit.OpenSession("a", 1000.0, 30), credit.OpenSession("b", 1000.0, 30)]
    assert credit.top_up_due(100, two, 50) and not credit.top_up_due(200, two, 50)
    assert not credit.top_up_due(0, [], 50)  # no session: nothing to keep going
