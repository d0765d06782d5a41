"""`evplug emulate` and `evplug devices ...` as a technician runs them: real subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.devices.test_discovery import _namespace_available

pytestmark = pytest.mark.integration
EVPLUG = [sys.executable, "-m", "evplug.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def evplug(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVPLUG, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def emulator() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [*EVPLUG, "emulate", "shelly-pro4pm", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()  # printed once it listens
    assert f"127.0.0.1:{port}" in banner
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_probe_prints_one_row_per_plug(emulator: str) -> None:
    done = evplug("devices", "probe", emulator)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("shelly SPSW-004PE16EU")
    plugs = [line for line in lines if line.startswith("shelly:")]
    assert len(plugs) == 4 and all(" OFF " in line for line in plugs)


def test_probe_of_nothing_names_what_was_tried() -> None:
    done = evplug("devices", "probe", f"http://127.0.0.1:{free_port()}", "--timeout", "1")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    for family in ("shelly_rpc", "shelly_gen1", "tasmota", "sonoff_diy"):
        assert family in done.stderr


def test_emulate_an_unknown_model_is_one_line() -> None:
    done = evplug("emulate", "toaster-9000", "--port", "9")
    assert done.returncode == 2 and "shelly-pro4pm" in done.stderr
    assert done.stderr.count("\n") == 1


@pytest.mark.slow
def test_discover_finds_an_announcing_relay_inside_a_private_network_namespace() -> None:
    reason = _namespace_available()
    if reason is not None:
        pytest.skip(f"mDNS must stay off the real network: {reason}")
    emulate = " ".join([*EVPLUG, "emulate", "shelly-pro4pm", "--port", "18081", "--mdns"])
    discover = " ".join([*EVPLUG, "devices", "discover", "--seconds", "3"])
    script = (
        f"ip link set lo up; {emulate} >/dev/null & sleep 2; {discover}; rc=$?; kill $!; exit $rc"
    )
    started = time.monotonic()
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "listening for relays" in done.stderr and "found shellypro4pm-" in done.stderr
    assert done.stdout.startswith("shelly_rpc") and "http://127.0.0.1:18081" in done.stdout
    assert time.monotonic() - started < 30
