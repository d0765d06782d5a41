"""mDNS discovery: record parsing (pure), and real mDNS inside a private network namespace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evplug.devices.discovery import (
    EWELINK,
    HTTP,
    SHELLY,
    DiscoveredDevice,
    decode_txt,
    merge,
    parse_service,
)

Payload = Callable[[str], Any]
ROOT = Path(__file__).resolve().parents[2]


def parse(service_type: str, instance: str, txt: dict[str, str]) -> DiscoveredDevice | None:
    return parse_service(service_type, f"{instance}.{service_type}", "10.0.0.7", 80, txt)


def test_gen2_shelly_on_its_own_service() -> None:
    found = parse(SHELLY, "shellypro4pm-f008d1d8b8b8", {"gen": "2", "app": "Pro4PM"})
    assert found == DiscoveredDevice(
        "shelly",
        "shelly_rpc",
        "shellypro4pm-f008d1d8b8b8",
        "10.0.0.7",
        80,
        "f008d1d8b8b8",
        "Pro4PM",
    )
    assert found.url == "http://10.0.0.7:80"


def test_gen2_shelly_on_http_is_told_apart_by_gen_and_case_insensitively() -> None:
    found = parse(HTTP, "ShellyPlugUS-C049EF8873E8", {"gen": "3"})
    assert found is not None
    assert (found.driver, found.hardware_id) == ("shelly_rpc", "c049ef8873e8")


def test_gen1_shelly_has_no_gen() -> None:
    short = parse(HTTP, "shellyplug-s-C18B12", {})
    longid = parse(HTTP, "shelly1-98F4ABF2A067", {})
    assert short is not None and longid is not None
    assert (short.driver, short.hardware_id) == ("shelly_gen1", None)  # 6 MAC digits only
    assert (longid.driver, longid.hardware_id) == ("shelly_gen1", "98f4abf2a067")


def test_tasmota_by_hostname_or_fork_txt() -> None:
    by_name = parse(HTTP, "tasmota-BAEBDC-3036", {})
    by_txt = parse(HTTP, "garage-socket", {"devicetype": "tasmota"})
    assert by_name is not None and by_txt is not None
    assert by_name.driver == by_txt.driver == "tasmota"
    assert by_name.hardware_id is None


def test_other_http_services_are_ignored() -> None:
    assert parse(HTTP, "HP LaserJet 400", {"ty": "HP"}) is None


def test_ewelink_diy_record(payload: Payload) -> None:
    txt = payload("ref4.1_sonoff_diy_mdns_txt_v14.json")
    found = parse_service(EWELINK, f"eWeLink_1000806ace.{EWELINK}", "10.0.0.8", 8081, txt)
    assert found == DiscoveredDevice(
        "sonoff", "sonoff_diy", "eWeLink_1000806ace", "10.0.0.8", 8081, "1000806ace", "diy_plug"
    )


def test_encrypted_ewelink_is_reported_with_a_note() -> None:
    found = parse(EWELINK, "eWelink_10009a8b7c", {"encrypt": "true", "type": "plug"})
    assert found is not None
    assert found.hardware_id == "10009a8b7c"
    assert "DIY mode" in found.note


def test_decode_txt() -> None:
    assert decode_txt({b"gen": b"2", b"flag": None}) == {"gen": "2", "flag": ""}


def test_merge_keeps_one_entry_per_address() -> None:
    found: dict[tuple[str, int], DiscoveredDevice] = {}
    via_http = parse(HTTP, "shellypro4pm-f008d1d8b8b8", {"gen": "2"})
    via_shelly = parse(SHELLY, "shellypro4pm-f008d1d8b8b8", {"gen": "2"})
    assert via_http is not None and via_shelly is not None
    assert merge(found, via_http) is True
    assert merge(found, via_shelly) is False
    assert list(found.values()) == [via_http]


def _namespace_available() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip not installed"
    check = subprocess.run(
        ["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=10
    )
    if check.returncode != 0:
        return f"cannot make a private network namespace: {check.stderr.decode().strip()}"
    return None


@pytest.mark.integration
@pytest.mark.slow
def test_real_mdns_in_a_private_network_namespace() -> None:
    """Emulators announce, ``discover`` finds them, ``probe`` confirms each hardware id."""
    reason = _namespace_available()
    if reason is not None:
        pytest.skip(f"mDNS must stay off the real network: {reason}")
    script = f"ip link set lo up && exec {sys.executable} -m tests.devices.mdns_roundtrip"
    run = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    found = {device["url"]: device for device in result["found"]}
    assert found.keys() == result["emulated"].keys()
    expected_driver = {
        "shelly-pro4pm": "shelly_rpc",
        "shelly-plugs-gen1": "shelly_gen1",
        "tasmota-4ch": "tasmota",
        "sonoff-diy-spm": "sonoff_diy",
    }
    for url, emulated in result["emulated"].items():
        assert found[url]["driver"] == expected_driver[emulated["model"]]
        assert result["probed"][url] == emulated["hardware_id"]
        if found[url]["hardware_id"] is not None:  # only where the records carry it
            assert found[url]["hardware_id"] == emulated["hardware_id"]
    assert sorted(result["progress"]) == sorted(device["name"] for device in result["found"])
