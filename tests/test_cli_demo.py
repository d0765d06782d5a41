"""`evplug demo` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from evplug.core.plug import State

pytestmark = pytest.mark.integration


def evplug(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evplug.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_smoke_scenario_runs_one_whole_session_and_prints_one_json_line(tmp_path: Path) -> None:
    done = evplug("demo", "--scenario", "smoke", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result) == {
        "session_id", "plug_id", "kwh", "cents", "price_cents_per_kwh",
        "balance_before_cents", "balance_after_cents", "states",
    }  # fmt: skip
    assert result["price_cents_per_kwh"] == 30
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
