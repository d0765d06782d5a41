"""The InfluxDB export against a real InfluxDB 1.x (Debian's ``influxdb``), read back by query.

The suite starts its own ``influxd`` on loopback: random free ports, data under a temp dir,
reporting off. ``make test`` installs the package (tools/install_os_packages.sh); without it the
test skips, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from evplug.bus.broker import free_port
from evplug.clock import FakeClock
from evplug.core.plug import SessionClosed, State, Transitioned, Trigger
from evplug.store.influx import InfluxExport, InfluxTarget
from tests.store.test_rollups import reading

pytestmark = pytest.mark.integration
INFLUXD = shutil.which("influxd")
CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
  logging-enabled = false
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  pprof-enabled = false
"""


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status
    except (urllib.error.URLError, ConnectionError):
        return 0


def _query(url: str, q: str, db: str = "") -> dict:
    data = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data, timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def influxdb_1x(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if INFLUXD is None:
        pytest.skip(
            "influxd is not installed: run tools/install_os_packages.sh (as root; make test does)"
            " to test the export against a real InfluxDB 1.x"
        )
    root = tmp_path_factory.mktemp("influxdb")
    config = root / "influxdb.conf"
    http_port = free_port()
    config.write_text(CONFIG.format(root=root, rpc_port=free_port(), http_port=http_port))
    log = (root / "influxd.log").open("wb")
    server = subprocess.Popen([INFLUXD, "-config", str(config)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 30
        while _get(f"{url}/ping") != 204:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"influxd did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.1)
        _query(url, "CREATE DATABASE evplug")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _series(answer: dict) -> dict:
    [result] = answer["results"]
    [series] = result["series"]
    return series


async def test_readings_transitions_and_sessions_are_read_back_from_influxdb_1x(
    influxdb_1x: str,
) -> None:
    sites = {"p1": "garage"}
    out = InfluxExport(InfluxTarget(influxdb_1x, database="evplug"), sites.get, FakeClock())
    out.offer_readings([reading("p1", 1_700_000_000_000, 2400.0, 5.0)])
    out.offer_readings([reading("p1", 1_700_000_002_000, 2300.0, 6.5)])
    out.offer_effect(
        Transitioned(
            "p1", State.CHARGING, State.CHARGE_COMPLETE, Trigger.LOW_POWER_SUSTAINED,
            1_700_000_003_000, "s1",
        )
    )  # fmt: skip
    out.offer_effect(
        SessionClosed("s1", "p1", "u", 1_699_999_000_000, 1_700_000_004_000, 1.5, 1, 30, "done")
    )
    await out.close()

    readings = _series(
        _query(influxdb_1x, "SELECT active_power_w, energy_wh FROM plug_readings", "evplug")
    )
    assert readings["values"] == [
        [1_700_000_000_000, 2400.0, 5.0],
        [1_700_000_002_000, 2300.0, 6.5],
    ]
    tagged = _query(influxdb_1x, "SHOW TAG VALUES FROM plug_readings WITH KEY = site", "evplug")
    assert _series(tagged)["values"] == [["site", "garage"]]
    transition = _series(
        _query(influxdb_1x, "SELECT to_state, plug FROM plug_transitions", "evplug")
    )
    assert transition["values"] == [[1_700_000_003_000, "CHARGE_COMPLETE", "p1"]]
    session = _series(_query(influxdb_1x, "SELECT energy_wh, cost_cents FROM sessions", "evplug"))
    assert session["values"] == [[1_700_000_004_000, 1.5, 1]]
