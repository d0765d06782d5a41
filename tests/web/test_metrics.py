"""/metrics shows evplug's own counters, moving while a running system polls its plugs."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import until
from tests.web.conftest import web_client

pytestmark = pytest.mark.integration

MOVING = (
    "evplug_relay_polls_total",
    "evplug_readings_ingested_total",
    "evplug_telemetry_rows_written_total",
    "evplug_telemetry_flushes_total",
)


def samples(text: str) -> dict[str, float]:
    """Unlabelled samples of the exposition text, by sample name."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def test_metrics_move_while_plugs_are_polled(demo_system) -> None:
    system = await demo_system()
    await system.start()
    async with web_client(system) as client:
        first = await client.get("/metrics")
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/plain")
        before = samples(first.text)
        after = before

        async def all_moved() -> bool:
            nonlocal after
            await system.sink.flush()
            after = samples((await client.get("/metrics")).text)
            return all(after[name] > before[name] for name in MOVING)

        await until(all_moved)
    assert all(name.startswith("evplug_") for name in after)
    assert "# HELP evplug_readings_rejected_total" in first.text  # defined, if never counted
