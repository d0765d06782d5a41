"""Each part built from the settings, and the checks made before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from evplug import assembly
from evplug.assembly import StartupError
from evplug.bus.broker import Broker, free_port
from evplug.bus.memory import MemoryBus
from evplug.bus.nats import NatsBus
from evplug.clock import FakeClock
from evplug.devices.base import DeviceInfo, DeviceUnreachable
from evplug.devices.simulated import SimulatedDevice
from evplug.mothership.runtime import MothershipConfig
from evplug.relay.manager import DeviceSpec
from evplug.relay.site_config import SiteConfig
from evplug.settings import Settings, SettingsError
from evplug.store import schema
from evplug.store.telemetry import ReadingSink
from evplug.store.upkeep import UpkeepConfig


async def test_the_memory_bus_from_its_url() -> None:
    assert isinstance(await assembly.make_bus(Settings(), FakeClock()), MemoryBus)


@pytest.mark.integration
async def test_a_nats_url_connects_to_the_broker(nats_broker: Broker) -> None:
    bus = await assembly.make_bus(
        Settings(bus_url=nats_broker.url, bus_credentials=nats_broker.credentials()), FakeClock()
    )
    try:
        assert isinstance(bus, NatsBus)
    finally:
        await bus.close()


async def test_a_broker_that_is_not_running_is_one_clear_error() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(StartupError, match=rf"unreachable at {url}: is `evplug broker` running"):
        await assembly.make_bus(Settings(bus_url=url), FakeClock())


def test_plain_sqlite_urls_get_the_async_driver(tmp_path: Path) -> None:
    absolute = tmp_path / "db" / "evplug.sqlite3"
    assert assembly.async_database_url(f"sqlite:///{absolute}") == (
        f"sqlite+aiosqlite:///{absolute}"
    )
    assert (tmp_path / "db").is_dir()  # made, so the first run on a new disk works


def test_postgresql_urls_get_the_asyncpg_driver() -> None:
    assert assembly.async_database_url("postgresql://evplug@db/evplug") == (
        "postgresql+asyncpg://evplug@db/evplug"
    )


async def test_a_server_refuses_a_database_whose_schema_is_behind(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared.sqlite3"  # not the demo's own file: never migrated by a server
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{shared}")
    with pytest.raises(StartupError, match=r"revision none \(empty\).*run `evplug db upgrade`"):
        await assembly.make_store(settings)
    assert await assembly.upgrade_database(settings) == schema.head()
    store = await assembly.make_store(settings)
    await store.repo.engine.dispose()


async def test_a_database_that_cannot_be_reached_is_one_line_naming_the_setting(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=f"postgresql://evplug@/evplug?host={tmp_path}")
    with pytest.raises(StartupError, match=r"cannot use the database .* EVPLUG_DATABASE_URL"):
        await assembly.make_store(settings)


def test_an_unwritable_data_dir_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StartupError, match=r"a-file/data is not writable.*EVPLUG_DATA_DIR"):
        assembly.async_database_url(f"sqlite:///{blocker / 'data' / 'evplug.sqlite3'}")


async def test_the_store_takes_the_telemetry_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, telemetry={"batch_rows": 7, "batch_delay_s": 0.5, "writers": 3}
    )
    store = await assembly.make_store(settings)
    try:
        assert (store.sink.max_rows, store.sink.max_delay_s, store.sink.writers) == (7, 0.5, 3)
        assert (tmp_path / "evplug.sqlite3").exists()
        assert await schema.current(store.repo.engine) == schema.head()  # upgraded by itself
    finally:
        await store.repo.engine.dispose()


def test_default_settings_make_the_default_parts() -> None:
    """Each default is written once: the parts' own defaults are the settings'."""
    assert assembly.mothership_config(Settings()) == MothershipConfig()
    telemetry = Settings().telemetry
    sink = ReadingSink.__init__.__defaults__
    assert sink == (
        telemetry.batch_rows,
        telemetry.batch_delay_s,
        telemetry.max_buffered_rows,
        None,
        telemetry.writers,
    )
    assert UpkeepConfig() == assembly.upkeep_config(Settings())


async def test_the_mothership_keeps_up_the_telemetry_and_exports_to_influx_when_enabled(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    plain = Settings(data_dir=tmp_path, telemetry={"raw_retention_days": 2})
    exporting = Settings(data_dir=tmp_path, influx={"enabled": True})
    for settings, names in [
        (plain, ["telemetry_upkeep"]),
        (exporting, ["telemetry_upkeep", "influx_export"]),
    ]:
        store = await assembly.make_store(settings)
        try:
            mothership = assembly.make_mothership(settings, MemoryBus(clock), store, clock)
            assert [b.name for b in mothership.background] == names
            assert (store.sink.on_written is not None) == (settings is exporting)
        finally:
            await store.repo.engine.dispose()
    assert assembly.upkeep_config(plain).retention_ms == 2 * 86_400_000


def test_the_mothership_config_comes_from_the_settings() -> None:
    settings = Settings(
        plug={"command_timeout_s": 30},
        mothership={"tick_s": 0.5, "max_clock_ahead_s": 60},
        circuit={"default_limit_a": 16, "plug_allowance_a": 6},
    )
    config = assembly.mothership_config(settings)
    assert config.plug_settings.command_timeout_ms == 30_000
    assert (config.tick_s, config.max_clock_ahead_ms) == (0.5, 60_000)
    assert (config.default_circuit_limit_a, config.load.default_draw_a) == (16, 6)


@pytest.mark.parametrize(("site_value", "expected"), [(None, 7.0), (3.0, 3.0)])
def test_a_site_files_poll_interval_wins_over_the_setting(
    site_value: float | None, expected: float
) -> None:
    clock = FakeClock()
    settings = Settings(relay={"poll_interval_s": 7})
    site = SiteConfig("garage-7", poll_interval_s=site_value)
    relay = assembly.make_relay(settings, site, MemoryBus(clock), clock, [])
    assert relay.poll_interval_s == expected


def test_a_site_files_bus_is_used_unless_the_settings_name_one(tmp_path: Path) -> None:
    site = SiteConfig("s", bus_url="nats://site:4222", bus_credentials=tmp_path / "s.creds")
    taken = assembly.site_bus_settings(Settings(), site)
    assert (taken.bus_url, taken.bus_credentials) == ("nats://site:4222", tmp_path / "s.creds")
    given = Settings(bus_url="nats://tunnel:4222", bus_credentials=tmp_path / "other.creds")
    kept = assembly.site_bus_settings(given, site)
    assert (kept.bus_url, kept.bus_credentials) == ("nats://tunnel:4222", tmp_path / "other.creds")


def test_discovery_only_when_the_site_asks() -> None:
    clock = FakeClock()
    relay = assembly.make_relay(Settings(), SiteConfig("s"), MemoryBus(clock), clock, [])
    assert assembly.make_rediscovery(SiteConfig("s"), relay, clock) is None
    asked = SiteConfig("s", discovery=True, discovery_interval_s=60)
    rediscovery = assembly.make_rediscovery(asked, relay, clock)
    assert rediscovery is not None and rediscovery.interval_s == 60


def test_a_site_file_with_an_auto_driver_names_the_probe(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('site_id = "s"\n[[devices]]\ndriver = "auto"\nurl = "http://10.0.0.9"\n')
    with pytest.raises(SettingsError, match=r"devices\[0\]\.driver: .*evplug devices probe"):
        assembly.load_site(path)


async def test_the_relay_page_links_to_the_public_url(demo_system) -> None:
    system = await demo_system()
    settings = Settings(web={"public_url": "https://charge.example"})
    app = assembly.make_web_app(settings, system.bus, system.store, system.relay)
    await system.connect()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/relay/")
    assert page.status_code == 200
    assert 'href="https://charge.example/plug/sim%3Ademo01%3A0"' in page.text


class _Unreachable(SimulatedDevice):
    async def connect(self) -> DeviceInfo:
        raise DeviceUnreachable("http://10.0.0.9: no answer")


async def test_a_relay_that_does_not_answer_is_a_startup_error(tmp_path: Path) -> None:
    clock = FakeClock()
    device = _Unreachable("aa01", clock)
    system = await assembly.build_system(
        Settings(data_dir=tmp_path), clock, SiteConfig("s"), [DeviceSpec(device)]
    )
    try:
        with pytest.raises(StartupError, match=r"^http://10\.0\.0\.9: no answer: is the relay on"):
            await system.connect()
    finally:
        await system.stop()


def test_a_port_is_free_again_at_once_after_a_clean_stop() -> None:
    """A server that closed its connections first leaves them in TIME_WAIT for a minute."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side of the connection waits
    client.close()
    server.close()
    assembly.check_port_free("127.0.0.1", port)


def test_a_port_someone_listens_on_is_named() -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StartupError, match=rf"port {port} on 127\.0\.0\.1 is already in use"):
            assembly.check_port_free("127.0.0.1", port)
