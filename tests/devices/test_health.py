from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evplug.devices.health import Change, PollHealth


def test_mia_after_three_failures_in_a_row_by_default() -> None:
    health = PollHealth()
    assert health.failed("a", "timeout") is None
    assert health.failed("a", "timeout") is None
    assert not health.is_mia("a")
    assert health.failed("a", "refused") is Change.WENT_MIA
    assert health.is_mia("a")
    assert health.last_error("a") == "refused"
    assert health.failed("a") is None  # said once, not on every further failure
    assert health.failures("a") == 4


def test_a_good_read_recovers_by_itself() -> None:
    health = PollHealth(mia_after=2)
    health.failed("a")
    health.failed("a")
    assert health.succeeded("a") is Change.RECOVERED
    assert not health.is_mia("a") and health.failures("a") == 0
    assert health.last_error("a") is None
    assert health.succeeded("a") is None


def test_a_good_read_between_failures_resets_the_count() -> None:
    health = PollHealth(mia_after=2)
    health.failed("a")
    assert health.succeeded("a") is None
    assert health.failed("a") is None
    assert not health.is_mia("a")


def test_devices_are_counted_apart() -> None:
    health = PollHealth(mia_after=1)
    assert health.failed("a") is Change.WENT_MIA
    assert not health.is_mia("b")
    health.forget("a")
    assert not health.is_mia("a") and health.last_error("a") is None


def test_mia_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PollHealth(mia_after=0)


@given(st.integers(min_value=1, max_value=5), st.lists(st.booleans(), max_size=40))
def test_mia_iff_the_last_n_polls_failed(mia_after: int, polls: list[bool]) -> None:
    health = PollHealth(mia_after)
    changes = []
    for ok in polls:
        changes.append(health.succeeded("d") if ok else health.failed("d"))
    streak = 0
    for ok in reversed(polls):
        if ok:
            break
        streak += 1
    assert health.is_mia("d") == (streak >= mia_after)
    # Changes alternate, starting with WENT_MIA, and end on the current verdict.
    said = [change for change in changes if change is not None]
    assert said == [Change.WENT_MIA, Change.RECOVERED] * (len(said) // 2) + (
        [Change.WENT_MIA] if len(said) % 2 else []
    )
    assert len(said) % 2 == int(health.is_mia("d"))
