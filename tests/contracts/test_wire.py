"""The wire framing: round trips, and every kind of bad bytes refused cleanly."""

from __future__ import annotations

import gzip
import importlib.util
import random
import sys
import zlib
from pathlib import Path

import pytest

from evplug.contracts import evplug_pb2 as pb
from evplug.contracts.wire import (
    MAX_COMPRESSED_BYTES,
    MAX_DECOMPRESSED_BYTES,
    MAX_DEVICES_PER_ANNOUNCEMENT,
    MAX_READINGS_PER_CHUNK,
    WireError,
    pack,
    unpack,
)

ROOT = Path(__file__).resolve().parents[2]


def chunk(n: int = 64) -> pb.ReadingChunk:
    c = pb.ReadingChunk(site_id="garage-1", seq=42)
    for i in range(n):
        c.readings.add(
            plug_id=f"shelly:a8032ab1234{i % 10}:{i % 4}",
            fuze_id="main",
            actual_state=pb.ACTUAL_STATE_ON,
            current_a=10.1,
            voltage_v=239.5,
            power_factor=0.99,
            timestamp_ms=1_700_000_000_000 + i,
            active_power_w=2400.0,
            energy_wh=1234.5 + i,
        )
    return c


def test_round_trip_keeps_every_field_and_the_absence_of_a_counter() -> None:
    original = chunk()
    original.readings.add(plug_id="no-counter", active_power_w=5.0)
    back = unpack(pack(original), pb.ReadingChunk)
    assert back == original
    assert not back.readings[-1].HasField("energy_wh")
    assert back.readings[0].HasField("energy_wh")


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (MAX_DECOMPRESSED_BYTES * 4))
    assert len(bomb) < 100_000
    with pytest.raises(WireError, match="more than"):
        unpack(bomb, pb.ReadingChunk)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "truncated"),
        (b"not gzip at all", "not gzip"),
        (pack(chunk())[:-9], "truncated"),
        (pack(chunk()) + b"extra", "trailing"),
        (gzip.compress(b"\xff\xff\xff\xff garbage"), "malformed protobuf"),
        (zlib.compress(b"zlib, not gzip"), "not gzip"),
        (b"\0" * (2 * 1024 * 1024), "exceed"),
    ],
)
def test_bad_bytes_get_a_clear_error(data: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        unpack(data, pb.ReadingChunk)


def test_generated_modules_match_the_proto(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "tools" / "gen_proto.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    sys.modules["gen_proto"] = gen
    spec.loader.exec_module(gen)
    for proto in gen.generate(tmp_path):
        for suffix in ("_pb2.py", "_pb2.pyi"):
            name = proto.stem + suffix
            fresh = (tmp_path / "evplug" / "contracts" / name).read_text()
            committed = (proto.parent / name).read_text()
            assert fresh == committed, f"{name} is stale: run `make proto`"


def test_messages_at_their_caps_fit_the_byte_caps_even_incompressible() -> None:
    noise = random.Random(7)
    full = pb.ReadingChunk(site_id="garage-1", seq=2**63)
    for i in range(MAX_READINGS_PER_CHUNK):
        reading = full.readings.add(
            plug_id=f"tasmota:a8032ab1{i:04x}:{i % 8}",
            fuze_id=f"tasmota:a8032ab1{i:04x}",
            actual_state=pb.ACTUAL_STATE_OVERCURRENT,
            timestamp_ms=1_700_000_000_000 + noise.getrandbits(40),
        )
        for field in ("current_a", "voltage_v", "power_factor", "active_power_w", "energy_wh"):
            setattr(reading, field, noise.random() * 10_000)
    site = pb.DeviceAnnouncement(site_id="garage-1", announcement_id="a" * 32)
    for i in range(MAX_DEVICES_PER_ANNOUNCEMENT):
        site.devices.add(
            plug_id=f"shelly:a8032ab1{i:04x}:{i % 4}",
            fuze_id=f"shelly:a8032ab1{i:04x}",
            model="Shelly Pro 4PM (SPSW-104PE16EU)",
            address=f"http://192.168.{i // 250}.{i % 250}:80",
            channel=i % 4,
        )
    for message in (full, site):
        assert len(message.SerializeToString()) < MAX_COMPRESSED_BYTES  # even without gzip
        assert unpack(pack(message), type(message)) == message
