"""What a waiting driver reads of their place in the queue."""

from __future__ import annotations

import pytest

from evplug.contracts import evplug_pb2 as pb
from evplug.web.plug_view import plug_view
from evplug.web.words import queue_text


@pytest.mark.parametrize(
    ("position", "eta_min", "text"),
    [
        (0, 0, ""),
        (1, 0, "In queue: 1st, starting in a moment"),
        (2, 25, "In queue: 2nd, about 25 min"),
        (3, 60, "In queue: 3rd, about 60 min"),
        (11, 300, "In queue: 11th, about 300 min"),
        (22, 1, "In queue: 22nd, about 1 min"),
        (
            1,
            -1,
            "In queue: 1st, this socket's circuit cannot take this car: ask the site's operator",
        ),
    ],
)
def test_queue_text(position: int, eta_min: int, text: str) -> None:
    assert queue_text(position, eta_min) == text


def test_the_drivers_view_of_a_queued_plug_carries_its_place() -> None:
    status = pb.PlugStatus(
        plug_id="p", state="IN_QUEUE", session_id="s", queue_position=2, queue_eta_min=25
    )
    seen = plug_view(
        status,
        session_user_id="me",
        user_id="me",
        site_name="Garage",
        balance_cents=100,
        min_start_credit_cents=1,
    )
    assert seen.queue_text == seen.words == "In queue: 2nd, about 25 min"
