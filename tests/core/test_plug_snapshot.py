"""A plug's snapshot as the store keeps it (JSON), and the plug restored from it."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evplug.core.actual import ActualState
from evplug.core.plug import Effect, Plug, Settings, State
from tests.core.test_plug_properties import events, run


def stored(plug: Plug) -> dict:
    """The snapshot as a start reads it back: through the store's JSON."""
    return orjson.loads(orjson.dumps(plug.snapshot()))


def every_slot(plug: Plug) -> dict:
    return {name: getattr(plug, name) for name in Plug.__slots__}


def test_every_field_comes_back_as_it_was_and_of_its_type() -> None:
    plug = Plug("p", "f")
    for n, name in enumerate(Plug.SNAPSHOT_FIELDS):  # each a value of its own, none a default
        value = getattr(plug, name)
        if isinstance(value, str):
            setattr(plug, name, f'{name} "é" {n}')
        elif isinstance(value, float) or value is None:
            setattr(plug, name, n + 0.25)
        elif isinstance(value, int) and not isinstance(value, ActualState):
            setattr(plug, name, 1_700_000_000_000 + n)
    plug.state, plug.actual = State.CHARGING, ActualState.OVERCURRENT
    plug.price_cents_per_kwh, plug.credit_cents = 30, 900
    plug.credit_wh = 30_000.0
    own = Settings(charge_start_w=500.0)

    restored = Plug.restore(stored(plug), own)

    assert every_slot(restored) == every_slot(plug) | {"settings": own}
    assert restored.state is State.CHARGING and restored.actual is ActualState.OVERCURRENT
    for name in Plug.SNAPSHOT_FIELDS:
        assert type(getattr(restored, name)) is type(getattr(plug, name)), name


def test_a_field_an_older_snapshot_lacks_is_a_new_plugs() -> None:
    assert every_slot(Plug.restore({"plug_id": "p"})) == every_slot(Plug("p"))
    older = {"plug_id": "p", "fuze_id": "f", "state": "CHARGING", "actual": "ON"}
    restored = Plug.restore(older)
    assert every_slot(restored) == every_slot(Plug("p", "f")) | {
        "state": State.CHARGING,
        "actual": ActualState.ON,
    }


@pytest.mark.parametrize(
    ("snapshot", "names"),
    [
        ({"fuze_id": "f"}, "plug_id"),
        ({"plug_id": "p", "state": "CHARGED"}, "not a plug state"),
        ({"plug_id": "p", "actual": "BURNT"}, "not a relay state"),
        ({"plug_id": "p", "actual": 9}, "not a relay state"),
    ],
)
def test_a_snapshot_that_is_no_plug_is_refused_by_name(snapshot: dict, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        Plug.restore(snapshot)


@settings(max_examples=200, deadline=None)
@given(events)
def test_a_plug_restored_from_the_stores_json_is_the_same_plug(sequence: list[tuple]) -> None:
    original = Plug("p", "f")
    run(original, sequence)
    assert every_slot(Plug.restore(stored(original))) == every_slot(original)


# A first reading, then a car charging: most of what a meter does happens in a session.
CHARGING = [
    ("reading", 2000, ActualState.OFF, 0.0, "up"),
    ("enable", 5000),
    ("admit",),
    ("answer", True, ActualState.ON, True),
    ("reading", 2000, ActualState.ON, 2000.0, "up"),
]


@settings(max_examples=300, deadline=None)
@given(st.booleans(), events)
def test_a_step_without_effects_changes_only_the_meter(charging: bool, events: list) -> None:
    # What a checkpoint relies on: between the batches that carry effects (and the whole
    # snapshot), the meter is all that can have moved.
    plug = Plug("p", "f")

    def unmetered(snapshot: dict) -> dict:
        return {k: v for k, v in snapshot.items() if k not in Plug.METER_FIELDS}

    def check(before: dict, effects: Sequence[Effect]) -> None:
        if not effects:
            assert unmetered(plug.snapshot()) == unmetered(before)

    run(plug, CHARGING + events if charging else events, check)
    assert plug.meter() == {k: plug.snapshot()[k] for k in Plug.METER_FIELDS}
