"""Builds each part of evplug from the settings, one function per part.

``evplug demo`` builds every part into one ``System`` in one event loop; a production command
builds just the parts it runs. Whatever a part's constructor needs is mapped from the settings
here and nowhere else, so a changed constructor is changed in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug.bus.base import Bus, BusError
from evplug.bus.broker import port_problem
from evplug.bus.memory import MemoryBus
from evplug.bus.nats import NatsBus, connect_nats
from evplug.clock import Clock, SystemClock
from evplug.core import ledger
from evplug.devices.base import DeviceError
from evplug.devices.registry import create_driver
from evplug.devices.simulated import SimulatedDevice
from evplug.mothership.admission import LoadSettings
from evplug.mothership.registry import circuit_key
from evplug.mothership.runtime import Background, Mothership, MothershipConfig
from evplug.payments.auto_top_up import AutoTopUps
from evplug.payments.demo import DemoProvider
from evplug.payments.events import PaymentEvents
from evplug.payments.guest import GuestHolds
from evplug.payments.provider import PaymentsProvider
from evplug.payments.stripe_provider import StripeProvider
from evplug.provision import sites
from evplug.provision.authority import ADMIN, Authority, SiteRecord
from evplug.relay.edge_guard import EdgeConfig
from evplug.relay.manager import DeviceSpec, RelayManager
from evplug.relay.outbox import Outbox, OutboxError
from evplug.relay.rediscovery import Rediscovery
from evplug.relay.site_config import AUTO, SiteConfig, SiteConfigError, load_site_config
from evplug.settings import Settings, SettingsError
from evplug.store import schema
from evplug.store.database import driver_url, make_engine
from evplug.store.influx import InfluxExport, InfluxTarget
from evplug.store.records import LedgerMismatch
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink
from evplug.store.upkeep import TelemetryUpkeep, UpkeepConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

    from evplug.payments.provider import PaymentsProvider
    from evplug.web.accounts import SignUpHook
    from evplug.web.accounts_web import AccountsConfig, DemoCredentials
    from evplug.web.mail import Mailer

_SQLITE = "sqlite:///"


class StartupError(RuntimeError):
    """The world refuses what the settings ask: a port in use, a data dir not writable, a relay
    that does not answer. One line that says what to check."""


# -- one function per part ---------------------------------------------------------------------


async def make_bus(settings: Settings, clock: Clock, declare_streams: bool = True) -> Bus:
    """The embedded bus, or a connection to the broker at ``bus_url`` with ``bus_credentials``
    (its streams declared, if asked: only a user allowed to administer JetStream can).

    On a broker, ack waits and request timeouts run in real time, whatever ``clock`` does.
    """
    if not settings.bus_url.startswith("nats://"):
        return MemoryBus(clock)
    try:
        return await connect_nats(
            settings.bus_url,
            credentials=settings.bus_credentials,
            declare_streams=declare_streams,
        )
    except BusError as exc:
        raise StartupError(str(exc)) from None


def bus_gone(bus: Bus) -> asyncio.Future[str] | None:
    """Done, with why, once the broker has shut the bus out for good (credentials revoked)."""
    return bus.gone if isinstance(bus, NatsBus) else None


@dataclass(frozen=True, slots=True)
class Store:
    repo: Repository
    sink: ReadingSink


async def make_store(settings: Settings) -> Store:
    """The database from its URL, its repository and the telemetry sink.

    The demo's own SQLite file (no ``database_url``) is upgraded here. Any other database must
    be at this code's schema already: a server never migrates a database others may share.
    """
    own_file = settings.database_url is None
    engine = await _open_database(settings, schema.upgrade if own_file else schema.check)
    telemetry = settings.telemetry
    sink = ReadingSink(
        engine,
        max_rows=telemetry.batch_rows,
        max_delay_s=telemetry.batch_delay_s,
        max_buffered_rows=telemetry.max_buffered_rows,
        writers=telemetry.writers,
    )
    return Store(Repository(engine), sink)


async def upgrade_database(settings: Settings) -> str | None:
    """``evplug db upgrade``: the configured database to this code's schema; its revision."""
    engine = await _open_database(settings, schema.upgrade)
    try:
        return await schema.current(engine)
    finally:
        await engine.dispose()


async def database_revision(settings: Settings) -> str | None:
    """``evplug db current``: the configured database's schema revision (None: empty)."""
    engine = await _open_database(settings, _nothing)
    try:
        return await schema.current(engine)
    finally:
        await engine.dispose()


async def _nothing(_engine: AsyncEngine) -> None:
    return None


async def _open_database(
    settings: Settings, prepare: Callable[[AsyncEngine], Awaitable[object]]
) -> AsyncEngine:
    """An engine on the configured database, ``prepare`` done, failures one line each."""
    engine = make_engine(async_database_url(settings.effective_database_url()))
    where = engine.url.render_as_string(hide_password=True)
    try:
        await prepare(engine)
    except schema.SchemaMismatch as exc:
        await engine.dispose()
        raise StartupError(str(exc)) from None
    except (OSError, DBAPIError) as exc:
        await engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StartupError(
            f"cannot use the database {where} ({reason}): is it running, and"
            " EVPLUG_DATABASE_URL right?"
        ) from None
    except BaseException:
        await engine.dispose()
        raise
    return engine


def async_database_url(url: str) -> str:
    """A plain database URL as the async driver takes it; a SQLite file's directory is made."""
    if url.startswith(_SQLITE):
        _check_writable(Path(url.removeprefix(_SQLITE)).parent)
    return driver_url(url)


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"data dir {directory} is not writable ({exc.strerror}): pass --data-dir or set"
            " EVPLUG_DATA_DIR to a directory you can write"
        ) from None


def mothership_config(settings: Settings) -> MothershipConfig:
    return MothershipConfig(
        plug_settings=settings.plug_settings(),
        tick_s=settings.mothership.tick_s,
        checkpoint_s=settings.mothership.checkpoint_s,
        ack_wait_s=settings.mothership.ack_wait_s,
        max_clock_ahead_ms=round(settings.mothership.max_clock_ahead_s * 1000),
        load=LoadSettings(
            default_draw_a=settings.circuit.plug_allowance_a,
            slot_ms=round(settings.load.slot_min * 60_000),
            stagger_ms=round(settings.load.stagger_s * 1000),
            overcurrent_window_ms=round(settings.load.overcurrent_window_s * 1000),
            volts=settings.load.volts,
        ),
        default_circuit_limit_a=settings.circuit.default_limit_a,
    )


def upkeep_config(settings: Settings) -> UpkeepConfig:
    telemetry = settings.telemetry
    return UpkeepConfig(
        retention_ms=round(telemetry.raw_retention_days * 86_400_000),
        rollup_delay_ms=round(telemetry.rollup_delay_s * 1000),
        prune_step_rows=telemetry.prune_step_rows,
    )


def make_mothership(settings: Settings, bus: Bus, store: Store, clock: Clock) -> Mothership:
    """The mothership, with the telemetry upkeep and (if enabled) the InfluxDB export."""
    from evplug.web.mail import text_sender

    provider = make_payments(settings, store.repo, clock)
    top_ups = AutoTopUps(provider, PaymentEvents(store.repo, clock), clock)
    guests = GuestHolds(provider, store.repo, clock, text_sender(make_mailer(settings)))
    upkeep = TelemetryUpkeep(store.repo.engine, store.sink, upkeep_config(settings))

    async def upkeep_now() -> None:
        await upkeep.run(clock.now_ms())

    mothership = Mothership(
        bus,
        store.repo,
        store.sink,
        clock,
        mothership_config(settings),
        top_ups=top_ups,
        guests=guests,
        background=[
            Background("telemetry_upkeep", settings.telemetry.upkeep_interval_s, upkeep_now)
        ],
    )
    influx = settings.influx
    if influx.enabled:
        export = InfluxExport(
            InfluxTarget.from_settings(influx),
            mothership.registry.site_of.get,
            clock,
            batch_points=influx.batch_points,
            max_queued_points=influx.max_queued_points,
            max_backoff_s=influx.max_backoff_s,
        )
        store.sink.on_written = export.offer_readings
        mothership.events.attach(export.offer_effect)
        mothership.background.append(
            Background("influx_export", influx.flush_interval_s, export.flush, export.close)
        )
    return mothership


def load_site(path: Path) -> SiteConfig:
    """A site file whose relays can be driven at once (each driver named)."""
    try:
        site = load_site_config(path)
    except SiteConfigError as exc:
        raise SettingsError([str(exc)]) from None
    for index, device in enumerate(site.devices):
        if device.driver == AUTO:
            raise SettingsError(
                [
                    f"{path}: devices[{index}].driver: name the driver, not {AUTO!r} (evplug"
                    f" devices probe {device.url} tells which)"
                ]
            )
    return site


def site_bus_settings(settings: Settings, site: SiteConfig) -> Settings:
    """The settings with the site file's broker and credentials, where the settings name none."""
    given = settings.model_fields_set
    update: dict[str, object] = {}
    if site.bus_url is not None and "bus_url" not in given:
        update["bus_url"] = site.bus_url
    if site.bus_credentials is not None and "bus_credentials" not in given:
        update["bus_credentials"] = site.bus_credentials
    return settings.model_copy(update=update)


def site_devices(site: SiteConfig) -> list[DeviceSpec]:
    return [
        DeviceSpec(create_driver(d.driver, d.url, d.username, d.password), d.fuze_id or "")
        for d in site.devices
    ]


async def register_site(settings: Settings, store: Store, site: SiteConfig) -> None:
    """The site and its fuzes' limits in the store; a new site gets the default price."""
    price = settings.price
    await store.repo.sites.ensure_site(
        site.site_id, site.site_id, price.cents_per_kwh, price.currency
    )
    for circuit in site.circuits():  # parents first
        parent = None if circuit.parent is None else circuit_key(site.site_id, circuit.parent)
        await store.repo.sites.ensure_circuit(
            circuit_key(site.site_id, circuit.id), site.site_id, circuit.limit_a, parent
        )


async def credit_driver(
    repo: Repository, driver_id: str, cents: int, key: str, now_ms: int, memo: str
) -> None:
    """The driver in the store, with ``cents`` of credit posted once under ``key``."""
    await repo.users.ensure_user(driver_id, driver_id, f"{driver_id}@example.invalid")
    if cents:
        await repo.ledger.post(
            ledger.adjustment(driver_id, key, cents, now_ms, actor="operator", reason=memo)
        )


async def add_driver(settings: Settings, driver_id: str, cents: int) -> str:
    """``evplug driver``: add the driver and credit to the settings' store; its balance."""
    store = await make_store(settings)
    try:
        now_ms = SystemClock().now_ms()
        await credit_driver(
            store.repo, driver_id, cents, f"operator:{uuid.uuid4().hex}", now_ms, "operator credit"
        )
        balance = await store.repo.ledger.balance(driver_id)
    finally:
        await store.repo.engine.dispose()
    return f"driver {driver_id}: balance {balance} cents"


async def check_ledger(settings: Settings) -> list[LedgerMismatch]:
    """``evplug ledger check``: accounts whose cached balance is not their ledger's sum."""
    engine = await _open_database(settings, schema.check)
    try:
        return await Repository(engine).ledger.mismatches()
    finally:
        await engine.dispose()


def make_outbox(settings: Settings, site: SiteConfig) -> Outbox:
    """The site's outbox file in the data dir: chunks the broker has not acked yet."""
    _check_writable(settings.data_dir)
    path = settings.data_dir / f"relay-outbox-{site.site_id}.sqlite3"
    try:
        return Outbox(path, settings.relay.outbox_max_messages)
    except OutboxError as exc:
        raise StartupError(str(exc)) from None


def make_relay(
    settings: Settings,
    site: SiteConfig,
    bus: Bus,
    clock: Clock,
    devices: list[DeviceSpec],
    outbox: Outbox | None = None,
) -> RelayManager:
    return RelayManager(
        site.site_id,
        bus,
        devices,
        clock,
        poll_interval_s=site.poll_interval_s or settings.relay.poll_interval_s,
        mia_after_failed_polls=site.mia_after_failed_polls,
        outbox=outbox,
        edge=EdgeConfig.from_settings(
            settings.relay, site.circuits(), settings.circuit.default_limit_a
        ),
    )


def make_rediscovery(site: SiteConfig, relay: RelayManager, clock: Clock) -> Rediscovery | None:
    """Only when the site file asks for it: browsing mDNS multicasts on the LAN."""
    if not site.discovery:
        return None
    return Rediscovery(relay, clock, interval_s=site.discovery_interval_s)


def make_payments(settings: Settings, repo: Repository, clock: Clock) -> PaymentsProvider:
    """Stripe whenever a secret key is set, else the demo provider (no money moves)."""
    keys = settings.stripe
    if keys.secret_key:
        return StripeProvider(
            repo, clock, keys.secret_key, keys.api_base, settings.effective_public_url()
        )
    return DemoProvider(repo, clock)


def make_web_app(
    settings: Settings,
    bus: Bus,
    store: Store,
    relay: RelayManager | None = None,
    time_factor: float = 1.0,
    demo: DemoCredentials | None = None,
    payments: PaymentsProvider | None = None,
) -> FastAPI:
    """The web app; with ``relay``, also that relay manager's own status page at /relay/.

    ``time_factor`` is how much faster than real time the bus's clock runs (the demo's speed):
    a driver's request still gets its timeout in real seconds. ``demo``: credentials the
    sign-in page offers.
    """
    from evplug.relay import status_page
    from evplug.web.app import DriverConfig, create_app

    driver = DriverConfig(
        request_timeout_s=settings.web.request_timeout_s * time_factor,
        currency=settings.price.currency,
        min_start_credit_cents=settings.plug.min_start_credit_cents,
    )
    provider = payments or make_payments(settings, store.repo, SystemClock())
    # A new driver's payments customer is made at sign-up (else at their first top-up).
    accounts = accounts_config(settings, demo, on_sign_up=provider.ensure_customer)
    app = create_app(bus, store.repo, driver, accounts, provider, settings.stripe.webhook_secret)
    if relay is not None:
        # On a site the Pi serves this page itself; in one process it rides along.
        app.mount("/relay", status_page.create_app(relay, settings.effective_public_url()))
    return app


def make_mailer(settings: Settings, demo: DemoCredentials | None = None) -> Mailer:
    """Over SMTP when a server is set, else logged (and, in the demo, links shown on the page)."""
    from evplug.web.mail import LogMailer, SmtpConfig, SmtpMailer

    mail = settings.mail
    if mail.smtp_host is None:
        return LogMailer(shows_links=demo is not None)
    return SmtpMailer(
        SmtpConfig(
            mail.smtp_host,
            mail.smtp_port,
            mail.from_address,
            mail.smtp_user,
            mail.smtp_password,
            mail.smtp_tls,
        )
    )


def accounts_config(
    settings: Settings,
    demo: DemoCredentials | None = None,
    on_sign_up: SignUpHook | None = None,
) -> AccountsConfig:
    """Sessions, limits, mail and OIDC sign-in as the settings say; ``on_sign_up`` is told of
    each new account."""
    from evplug.web.accounts import AccountLimits, AccountPolicy
    from evplug.web.accounts_web import AccountsConfig
    from evplug.web.auth import SessionPolicy
    from evplug.web.oidc import OidcConfig
    from evplug.web.rate_limit import Limit

    auth, oidc = settings.auth, settings.oidc
    limits = AccountLimits(
        sign_in=Limit(auth.sign_in_attempts, 300.0),
        sign_up=Limit(auth.sign_up_attempts, 3600.0),
        mail=Limit(auth.mails_per_hour, 3600.0),
    )
    secure = {"auto": None, "always": True, "never": False}[auth.secure_cookies]
    return AccountsConfig(
        AccountPolicy(settings.effective_public_url(), limits=limits),
        SessionPolicy(secure, idle_s=auth.session_idle_days * 86400),
        make_mailer(settings, demo),
        demo,
        OidcConfig(oidc.issuer_url, oidc.client_id, oidc.client_secret, oidc.name)
        if oidc.issuer_url and oidc.client_id and oidc.client_secret
        else None,
        on_sign_up=on_sign_up,
    )


def check_port_free(host: str, port: int) -> None:
    """Fail early, in one line, when the web server could not listen."""
    problem = port_problem(host, port)
    if problem is not None:
        raise StartupError(f"{problem}: stop what is using it or pass --port with another number")


# -- sites and their credentials ---------------------------------------------------------------

DEFAULT_BROKER_URL = "nats://127.0.0.1:4222"  # `evplug broker`'s default address


def site_authority(settings: Settings) -> Authority:
    """The trust of the broker whose data dir is the settings' (``evplug broker --data-dir``)."""
    return Authority(settings.data_dir / "nats")


def _broker_url(settings: Settings) -> str:
    return settings.bus_url if settings.bus_url.startswith("nats://") else DEFAULT_BROKER_URL


async def create_site(settings: Settings, name: str, out_dir: Path) -> tuple[str, list[str]]:
    """``evplug site create``: the site, its files in ``out_dir``, its streams on the broker and
    its row in the store where they can be reached; its id and what was done, a line each."""
    authority = site_authority(settings)
    authority.ensure()
    site_id = sites.site_id_for(name)
    url = _broker_url(settings)
    site_file = out_dir / sites.SITE_FILE
    authority.issue(site_id, name, partial(sites.write_site_files, out_dir, site_id, url))
    notes = [f"wrote {site_file} and {out_dir / sites.CREDS_FILE} (secret: for this site only)"]
    try:
        bus = await connect_nats(url, credentials=authority.creds_file(ADMIN))
        await bus.close()
        notes.append(f"streams ready on the broker at {url}")
    except BusError as exc:
        notes.append(f"streams not declared ({exc}): the mothership declares them when it starts")
    try:
        store = await make_store(settings)
    except StartupError as exc:
        notes.append(f"not in the store ({exc}): `evplug mothership --site {site_file}` adds it")
        return site_id, notes
    try:
        price = settings.price
        await store.repo.sites.ensure_site(site_id, name, price.cents_per_kwh, price.currency)
    finally:
        await store.repo.engine.dispose()
    notes.append("added to the store")
    return site_id, notes


def list_sites(settings: Settings) -> list[SiteRecord]:
    return list(site_authority(settings).sites())


async def rotate_site_key(settings: Settings, site_id: str, out_dir: Path) -> list[str]:
    """``evplug site rotate-key``: new credentials in ``out_dir``; the old ones refused now."""
    authority = site_authority(settings)
    authority.rotate(site_id, partial(sites.write_creds, out_dir))
    path = out_dir / sites.CREDS_FILE
    return [f"wrote {path}: install it on the site", await _push(settings, authority)]


async def revoke_site(settings: Settings, site_id: str) -> list[str]:
    """``evplug site revoke``: the site's credentials refused for good, its relay cut off now."""
    authority = site_authority(settings)
    authority.revoke(site_id)
    return [f"site {site_id} revoked", await _push(settings, authority)]


async def _push(settings: Settings, authority: Authority) -> str:
    url = _broker_url(settings)
    try:
        await sites.push_account(authority, url)
    except sites.BrokerAway as exc:
        return str(exc)
    return f"the broker at {url} applied it: the old credentials are refused from now on"


# -- every part in one process -----------------------------------------------------------------


@dataclass
class System:
    clock: Clock
    bus: Bus
    store: Store
    mothership: Mothership
    relay: RelayManager
    simulated: list[SimulatedDevice] = field(default_factory=list)
    rediscovery: Rediscovery | None = None
    payments: PaymentsProvider | None = None
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def repo(self) -> Repository:
        return self.store.repo

    @property
    def sink(self) -> ReadingSink:
        return self.store.sink

    async def connect(self) -> None:
        """Identify the relays, so a wrong address fails before anything else starts."""
        try:
            await self.relay.connect()
        except DeviceError as exc:
            raise StartupError(
                f"{exc}: is the relay on, and its address in the site config right?"
            ) from None

    async def start(self) -> None:
        await self.connect()
        await self.mothership.start()
        await self.relay.start()
        if self.relay.announcing is not None:  # in one process the mothership acks at once
            await self.relay.announcing
        if self.rediscovery is not None:
            self._background.append(asyncio.create_task(self.rediscovery.run()))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.relay.stop()
        await self.mothership.stop()
        await self.repo.engine.dispose()
        await self.bus.close()


async def build_system(
    settings: Settings, clock: Clock, site: SiteConfig, devices: list[DeviceSpec]
) -> System:
    """Bus, store, mothership and the site's relay manager, not yet started."""
    bus = await make_bus(settings, clock)
    try:
        store = await make_store(settings)
    except BaseException:
        await bus.close()
        raise
    try:
        await register_site(settings, store, site)
        outbox = make_outbox(settings, site)
    except BaseException:
        await store.repo.engine.dispose()
        await bus.close()
        raise
    mothership = make_mothership(settings, bus, store, clock)
    relay = make_relay(settings, site, bus, clock, devices, outbox)
    rediscovery = make_rediscovery(site, relay, clock)
    payments = make_payments(settings, store.repo, clock)
    return System(clock, bus, store, mothership, relay, rediscovery=rediscovery, payments=payments)
