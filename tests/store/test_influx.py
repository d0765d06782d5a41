"""The InfluxDB export against a local HTTP server that records what it is sent.

No InfluxDB 2.x server is installed here: the 2.x request (path, query, token header, body) is
checked against its documented shape. ``test_influx_server`` writes to a real InfluxDB 1.x.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from evplug.clock import FakeClock
from evplug.core.plug import SessionClosed, State, Transitioned, Trigger
from evplug.metrics import value
from evplug.store.influx import InfluxExport, InfluxTarget, line, reading_line
from tests.store.test_rollups import reading

DROPPED = "evplug_influx_points_dropped_total"
WRITTEN = "evplug_influx_points_written_total"
FAILURES = "evplug_influx_write_failures_total"
SITES = {"p1": "garage", "p2": "garage"}


@dataclass
class Recorder:
    """An HTTP server that answers each write with the next status of ``answers`` (then 204)."""

    answers: list[int] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], dict[str, str], str]] = field(default_factory=list)
    url: str = ""

    async def write(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append((request.path, dict(request.query), dict(request.headers), body))
        status = self.answers.pop(0) if self.answers else 204
        return web.Response(status=status, text="" if status == 204 else '{"error":"no"}')


@pytest.fixture
async def server() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/write", recorder.write)
    app.router.add_post("/api/v2/write", recorder.write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recorder.url = f"http://127.0.0.1:{port}"
    yield recorder
    await runner.cleanup()


def export(target: InfluxTarget, clock: FakeClock | None = None, **kwargs: int) -> InfluxExport:
    return InfluxExport(target, SITES.get, clock or FakeClock(), **kwargs)


def test_line_protocol_escapes_names_and_strings_and_leaves_out_what_it_cannot_write() -> None:
    assert (
        line("m s", {"site": "a,b=c d", "plug": None}, {"s": 'say "hi" \\', "n": 3, "x": None}, 7)
        == 'm\\ s,site=a\\,b\\=c\\ d s="say \\"hi\\" \\\\",n=3i 7'
    )
    assert line("m", {}, {"f": 1.5, "nan": float("nan")}, 1) == "m f=1.5 1"
    assert reading_line(reading("p1", 1000, 2400.0, None), "garage") == (
        "plug_readings,plug=p1,site=garage current_a=10.0,voltage_v=240.0,power_factor=1.0,"
        "active_power_w=2400.0,actual_state=1i 1000"
    )


async def test_a_2x_write_posts_to_api_v2_write_with_org_bucket_and_token(
    server: Recorder,
) -> None:
    target = InfluxTarget(server.url, version=2, bucket="tele", org="acme", token="s3cret")
    out = export(target)
    out.offer_readings([reading("p1", 1000, 2400.0, 5.0), reading("p2", 1001, 0.0, None)])
    out.offer_effect(
        Transitioned(
            "p1", State.CHARGING, State.CHARGE_COMPLETE, Trigger.LOW_POWER_SUSTAINED, 9, "s1"
        )
    )
    out.offer_effect(SessionClosed("s1", "p1", "u", 0, 60_000, 400.0, 12, 30, "complete"))
    await out.close()
    [(path, query, headers, body)] = server.requests
    assert path == "/api/v2/write"
    assert query == {"org": "acme", "bucket": "tele", "precision": "ms"}
    assert headers["Authorization"] == "Token s3cret"
    assert headers["Content-Type"].startswith("text/plain")
    assert body.splitlines() == [
        "plug_readings,plug=p1,site=garage current_a=10.0,voltage_v=240.0,power_factor=1.0,"
        "active_power_w=2400.0,energy_wh=5.0,actual_state=1i 1000",
        "plug_readings,plug=p2,site=garage current_a=0.0,voltage_v=240.0,power_factor=1.0,"
        "active_power_w=0.0,actual_state=1i 1001",
        'plug_transitions,plug=p1,site=garage from_state="CHARGING",to_state="CHARGE_COMPLETE",'
        'trigger="low power sustained",session_id="s1" 9',
        'sessions,plug=p1,site=garage session_id="s1",user_id="u",started_ms=0i,'
        "duration_s=60.0,energy_wh=400.0,cost_cents=12i,price_cents_per_kwh=30i,"
        'reason="complete" 60000',
    ]


async def test_a_1x_write_posts_to_write_with_the_database_and_basic_auth(
    server: Recorder,
) -> None:
    out = export(InfluxTarget(server.url, database="evplug", username="w", password="pw"))
    out.offer_readings([reading("p1", 1000, 2400.0, 5.0)])
    await out.close()
    [(path, query, headers, _)] = server.requests
    assert (path, query) == ("/write", {"db": "evplug", "precision": "ms"})
    assert headers["Authorization"] == "Basic dzpwdw=="  # w:pw


async def test_points_go_in_batches_of_at_most_batch_points(server: Recorder) -> None:
    out = export(InfluxTarget(server.url), batch_points=3)
    out.offer_readings([reading("p1", t, 1.0, None) for t in range(5)])
    out.offer_effect(
        Transitioned(
            "p1", State.CHARGING, State.CHARGE_COMPLETE, Trigger.LOW_POWER_SUSTAINED, 9, ""
        )
    )
    written = value(WRITTEN, measurement="plug_readings")
    await out.flush()
    assert [len(body.splitlines()) for *_, body in server.requests] == [3, 3]
    assert value(WRITTEN, measurement="plug_readings") == written + 5


async def test_past_the_queue_limit_points_are_dropped_counted_and_logged(
    server: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    out = export(InfluxTarget(server.url), max_queued_points=10)
    dropped = value(DROPPED, reason="queue_full")
    out.offer_readings([reading("p1", t, 1.0, None) for t in range(8)])
    out.offer_readings([reading("p2", t, 1.0, None) for t in range(5)])  # 13 > 10: dropped
    out.offer_effect(
        Transitioned(
            "p1", State.CHARGING, State.CHARGE_COMPLETE, Trigger.LOW_POWER_SUSTAINED, 9, ""
        )
    )
    assert out.queued == 9
    assert value(DROPPED, reason="queue_full") == dropped + 5
    await out.close()
    assert "influx.points_dropped" in capsys.readouterr().out
    assert len(server.requests[0][3].splitlines()) == 9


async def test_a_failing_influxdb_is_retried_with_a_doubling_backoff_the_queue_still_taking(
    server: Recorder,
) -> None:
    clock = FakeClock()
    server.answers = [503, 503]
    out = export(InfluxTarget(server.url), clock, max_queued_points=100)
    failures = value(FAILURES)
    out.offer_readings([reading("p1", 1, 1.0, None)])
    await out.flush()  # 503: retry in 0.5 s
    await out.flush()  # too soon: nothing sent
    await clock.advance(0.5)
    await out.flush()  # 503 again: retry in 1 s
    out.offer_readings([reading("p1", 2, 1.0, None)])  # taken meanwhile
    await clock.advance(0.9)
    await out.flush()
    assert len(server.requests) == 2 and value(FAILURES) == failures + 2
    await clock.advance(0.1)
    await out.flush()
    assert [body for *_, body in server.requests[2:]] == [
        server.requests[0][3],  # the same batch again
        server.requests[0][3].replace(" 1", " 2"),
    ]
    assert out.queued == 0


async def test_a_batch_influxdb_refuses_for_good_is_dropped_and_counted(server: Recorder) -> None:
    server.answers = [400]
    out = export(InfluxTarget(server.url))
    rejected = value(DROPPED, reason="rejected")
    out.offer_readings([reading("p1", 1, 1.0, None), reading("p1", 2, 1.0, None)])
    await out.flush()
    assert value(DROPPED, reason="rejected") == rejected + 2
    out.offer_readings([reading("p1", 3, 1.0, None)])
    await out.close()
    assert len(server.requests) == 2  # not retried
