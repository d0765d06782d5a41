"""`evplug demo` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from evplug.bus.broker import free_port
from evplug.core.plug import State
from tests.test_cli_devices import emulator  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration


def evplug(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EVPLUG_")}
    return subprocess.run(
        [sys.executable, "-m", "evplug.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=clean | (env or {}),
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


@pytest.mark.slow
def test_smoke_scenario_runs_one_whole_session_and_prints_one_json_line(tmp_path: Path) -> None:
    done = evplug("demo", "--scenario", "smoke", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result) == {
        "session_id", "plug_id", "kwh", "cents", "price_cents_per_kwh", "reason",
        "balance_before_cents", "balance_after_cents", "states",
    }  # fmt: skip
    assert result["price_cents_per_kwh"] == 30 and result["reason"] == "complete"
    assert result["kwh"] == pytest.approx(1.5, abs=0.02)
    assert abs(result["cents"] - result["kwh"] * 30) <= 1  # kwh is rounded to 3 places
    assert result["balance_after_cents"] == result["balance_before_cents"] - result["cents"]
    assert result["states"] == [
        "INITIALISING", "ACCOUNT_NULL", "ACCOUNT_ADDED", "ENTERING_QUEUE", "IN_QUEUE",
        "SENSING_START_REQUESTED", "SENSING_START_ISSUED_LOCALLY", "SENSING_CHARGE", "CHARGING",
        "CHARGE_COMPLETE", "ACCOUNT_REMOVAL_REQUESTED", "ACCOUNT_REMOVAL_ISSUED_LOCALLY",
        "ACCOUNT_NULL",
    ]  # fmt: skip
    assert all(s in State.__members__ for s in result["states"])
    assert (tmp_path / "evplug.sqlite3").exists()


def test_zero_plugs_is_one_line_and_a_non_zero_exit() -> None:
    done = evplug("demo", "--plugs", "0")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--plugs" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = evplug("demo", "--port", str(port), "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert f"port {port}" in done.stderr and "in use" in done.stderr
    assert done.stderr.count("\n") == 1


def test_an_unwritable_data_dir_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = evplug("demo", "--data-dir", str(blocker / "data"), "--scenario", "smoke")
    assert done.returncode == 2
    assert "not writable" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "abc"], {}, "--port: must be a whole number 1..65535, got 'abc'"),
        (
            [],
            {"EVPLUG_WEB__PORT": "0"},
            "EVPLUG_WEB__PORT: must be a whole number 1..65535, got '0'",
        ),
        ([], {"EVPLUG_RELAY__POLL_INTERVAL_S": "inf"}, "EVPLUG_RELAY__POLL_INTERVAL_S: must be a"),
        ([], {"EVPLUG_WEB__PROT": "8080"}, "did you mean EVPLUG_WEB__PORT?"),
        (["--speed", "inf"], {}, "--speed: must be a number 0.01..100000, got inf"),
        (["--car-kwh", "nan"], {}, "--car-kwh: must be a number 0.1..1000, got nan"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    assert expected in one_line_error(evplug("demo", "--scenario", "smoke", *args, env=env))


def test_a_setting_from_the_config_file_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "evplug.toml"
    config.write_text("[telemetry]\nbatch_delay_s = nan\n")
    done = evplug("--config", str(config), "demo", "--scenario", "smoke")
    assert f"{config}: telemetry.batch_delay_s: must be a number" in one_line_error(done)


def test_a_broker_that_is_not_running_is_one_line_naming_the_command(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    done = evplug(
        "demo", "--scenario", "smoke", "--data-dir", str(tmp_path), env={"EVPLUG_BUS_URL": url}
    )
    assert one_line_error(done) == (
        f"evplug demo: broker unreachable at {url}: is `evplug broker` running?\n"
    )


@pytest.mark.parametrize("site_id", ["garage.7", "garage 7", "garage*", "garage>"])
def test_a_site_id_that_cannot_be_a_subject_is_one_line_not_a_traceback(
    tmp_path: Path,
    emulator: str,  # noqa: F811 - the fixture imported above
    site_id: str,
) -> None:
    """It passed the site file's check, and start-up crashed on the relay's first subject."""
    site = tmp_path / "site.toml"
    site.write_text(
        f'site_id = "{site_id}"\n[[devices]]\ndriver = "shelly_rpc"\nurl = "{emulator}"\n'
    )
    done = evplug(
        "demo", "--scenario", "smoke", "--data-dir", str(tmp_path), "--site-config", str(site)
    )
    assert f"{site}: site_id: site id '{site_id}' may not contain" in one_line_error(done)


@pytest.mark.slow
def test_queue_scenario_shares_one_circuit_in_turns_within_its_limit(tmp_path: Path) -> None:
    done = evplug("demo", "--scenario", "queue", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    [fuze] = result["fuzes"]
    assert fuze["id"] == "main" and fuze["limit_a"] == 20.0
    assert 19.0 <= fuze["peak_a"] <= fuze["limit_a"]  # two cars at a time, never three
    assert len(result["requested"]) == 4
    assert result["admitted"] == result["charging_started"] == result["requested"]
    queued = [q for q in result["first_queue"] if q["position"]]
    assert [q["position"] for q in queued] == [1, 2]
    assert all(0 < q["eta_min"] <= 30 for q in queued)
    assert result["all_completed"] and result["all_billed"]
