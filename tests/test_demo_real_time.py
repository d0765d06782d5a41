"""The demo's sped-up clock meets what takes real time whatever its speed."""

from __future__ import annotations

from evplug.demo import EDGE_REAL_S, STAMP_REAL_S, in_real_time
from evplug.settings import Settings


def test_at_speed_the_edge_timeouts_and_the_stamping_slack_last_real_time() -> None:
    settings = in_real_time(Settings(), 300.0)
    assert settings.relay.dead_man_s == EDGE_REAL_S * 300
    assert settings.plug.reading_jitter_s == STAMP_REAL_S * 300
    assert settings.plug_settings().reading_jitter_ms == round(STAMP_REAL_S * 300 * 1000)


def test_in_real_time_what_is_longer_already_stays() -> None:
    settings = in_real_time(Settings(), 1.0)
    assert settings.plug.reading_jitter_s == Settings().plug.reading_jitter_s == 1.0
    assert settings.relay.dead_man_s == Settings().relay.dead_man_s
