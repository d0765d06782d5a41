"""What a driver reads of a plug, a session, money and time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evplug.contracts import evplug_pb2 as pb
from evplug.core.plug import EndReason, State
from evplug.web.words import END_WORDS, STATE_WORDS, duration, money, ordinal, state_words


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (pb.PlugStatus(state="CHARGING", actual_state=pb.ACTUAL_STATE_ON), "Charging"),
        (pb.PlugStatus(state="SENSING_CHARGE"), "Waiting for your car to draw power"),
        (
            pb.PlugStatus(state="IN_QUEUE", queue_position=2, queue_eta_min=25),
            "In queue: 2nd, about 25 min",
        ),
        (pb.PlugStatus(state="SENSING_START_NOT_RESPONDING"), "Not responding — try again"),
        (
            pb.PlugStatus(state="ACCOUNT_NULL", actual_state=pb.ACTUAL_STATE_OVERCURRENT),
            "Stopped: the socket tripped",
        ),
        (
            pb.PlugStatus(state="ACCOUNT_NULL", last_end_reason="tripped"),
            "Available. Last session: Stopped: the socket tripped",
        ),
        (
            pb.PlugStatus(state="CHARGING", actual_state=pb.ACTUAL_STATE_MIA),
            "Not responding: the socket is offline, try again in a minute",
        ),
    ],
)
def test_state_in_plain_words(status: pb.PlugStatus, words: str) -> None:
    assert state_words(status) == words


def test_every_state_and_end_reason_has_words() -> None:
    assert set(STATE_WORDS) == {s.value for s in State}
    assert set(END_WORDS) == {r.value for r in EndReason}


@pytest.mark.parametrize(
    ("n", "text"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (22, "22nd")]
)
def test_ordinal(n: int, text: str) -> None:
    assert ordinal(n) == text


@pytest.mark.parametrize(
    ("cents", "text"),
    [(0, "$0.00"), (5, "$0.05"), (1205, "$12.05"), (-40, "-$0.40"), (123456, "$1,234.56")],
)
def test_money(cents: int, text: str) -> None:
    assert money(cents, "AUD") == text


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_money_reads_back_to_the_same_cents(cents: int) -> None:
    text = money(cents, "EUR").removesuffix(" EUR").replace(",", "")
    whole, part = text.lstrip("-").split(".")
    assert (int(whole) * 100 + int(part)) * (-1 if text.startswith("-") else 1) == cents


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0 s"), (45_000, "45 s"), (12 * 60_000, "12 min"), (65 * 60_000, "1 h 05 min")],
)
def test_duration(ms: int, text: str) -> None:
    assert duration(ms) == text
