"""Every knob a deployment sets, typed and bounded, in one object.

Sources, lowest to highest priority: the defaults below, a TOML file (``--config FILE`` or
``EVPLUG_CONFIG``), ``EVPLUG_*`` environment variables (groups joined by ``__``, e.g.
``EVPLUG_WEB__PORT``) and command-line flags. ``load_settings`` reads them all; a wrong value is
one ``SettingsError`` line naming where it came from and what is accepted, e.g.
``EVPLUG_WEB__PORT: must be a whole number 1..65535, got 'abc'``.

The state machine's defaults live in ``core`` and are taken from there; durations are in
seconds here (and converted to the core's milliseconds). The README's configuration table is
generated from the field descriptions (``make config-table``).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pydantic_settings
from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from evplug.core import circuits, plug, pricing

ENV_PREFIX = "EVPLUG_"
CONFIG_ENV = "EVPLUG_CONFIG"
NESTED = "__"
# Shared with the site file, whose keys of the same meaning take the same bounds.
POLL_INTERVAL_S = (0.2, 3600.0)
# The bus URLs a setting and a site file accept.
NATS_URL = re.compile(r"nats://[^\s/:]+(:\d{1,5})?/?")
CIRCUIT_LIMIT_A = (1.0, 10_000.0)

_CORE = plug.Settings()


class SettingsError(ValueError):
    """One or more wrong settings; each line names the setting and what it accepts."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _not_bool(value: object) -> object:
    # TOML `port = true` is a mistake, not 1.
    if isinstance(value, bool):
        raise ValueError("not a boolean")
    return value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


Whole = Annotated[int, BeforeValidator(_not_bool)]
Number = Annotated[float, BeforeValidator(_not_bool)]


def _seconds(ms: int) -> float:
    return ms / 1000


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class WebSettings(_Group):
    host: str = Field(
        "127.0.0.1", description="address the web server binds (0.0.0.0: reachable from the LAN)"
    )
    port: Whole = Field(8000, ge=1, le=65535, description="port the web server listens on")
    public_url: str | None = Field(
        None,
        description="base URL drivers reach the web at, for QR codes (default: http://HOST:PORT)",
    )
    request_timeout_s: Number = Field(
        5.0, ge=0.1, le=120, description="how long (s) the web waits for the mothership's answer"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", value):
            raise ValueError("must be a host name or IP address, e.g. 127.0.0.1 or 0.0.0.0")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://charge.example")
        return None if value is None else value.rstrip("/")


class PriceSettings(_Group):
    cents_per_kwh: Whole = Field(
        pricing.DEFAULT_PRICE_CENTS_PER_KWH,
        ge=0,
        le=pricing.MAX_PRICE_CENTS_PER_KWH,
        description="price of a new site, in whole cents per kWh",
    )
    currency: str = Field(
        pricing.DEFAULT_CURRENCY, description="currency of a new site (ISO 4217 code)"
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError("must be a three-letter ISO 4217 code in capitals, e.g. AUD")
        return value


class StripeSettings(_Group):
    """Stripe, used for payments whenever a secret key is set (else the demo provider).

    Their environment variables are Stripe's usual names, without the EVPLUG_ prefix.
    """

    secret_key: str | None = Field(
        None, description="Stripe secret key (sk_live_..., sk_test_...); unset: demo payments"
    )
    webhook_secret: str | None = Field(
        None, description="signing secret of the /webhooks/stripe endpoint (whsec_...)"
    )
    api_base: str = Field(
        "https://api.stripe.com", description="Stripe API base URL (a local server in tests)"
    )

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(sk|rk)_\w+", value):
            raise ValueError("must be a Stripe secret key, sk_test_... or sk_live_...")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"whsec_\w+", value):
            raise ValueError("must be the endpoint's signing secret, whsec_...")
        return value

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+/?", value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://api.stripe.com")
        return value.rstrip("/")


# Settings read from a conventional variable of their own, not EVPLUG_*.
OWN_ENV = {
    "stripe.secret_key": "STRIPE_SECRET_KEY",
    "stripe.webhook_secret": "STRIPE_WEBHOOK_SECRET",
    "stripe.api_base": "STRIPE_API_BASE",
}


def _own_env(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, name in OWN_ENV.items():
        if environ.get(name):
            _put(tree, dotted.split("."), environ[name])
    return tree


class PlugSettings(_Group):
    charge_start_w: Number = Field(
        _CORE.charge_start_w, ge=1, le=100_000, description="a car is charging above this power (W)"
    )
    complete_below_w: Number = Field(
        _CORE.complete_below_w,
        ge=0,
        le=100_000,
        description="a charge is complete when the mean power over the window is below this (W)",
    )
    complete_window_s: Number = Field(
        _seconds(_CORE.complete_window_ms),
        ge=1,
        le=86_400,
        description="the window (s) that mean power is taken over",
    )
    complete_min_readings: Whole = Field(
        _CORE.complete_min_readings,
        ge=1,
        le=100_000,
        description="readings the window must hold before a charge can be complete",
    )
    command_timeout_s: Number = Field(
        _seconds(_CORE.command_timeout_ms),
        ge=1,
        le=86_400,
        description="a relay that has not answered a command in this long (s) is NOT_RESPONDING",
    )
    no_draw_timeout_s: Number = Field(
        _seconds(_CORE.no_draw_timeout_ms),
        ge=1,
        le=86_400,
        description="SENSING_CHARGE without draw this long (s) -> WAITING_FOR_PLUG_IN",
    )
    no_car_timeout_s: Number = Field(
        _seconds(_CORE.no_car_timeout_ms),
        ge=1,
        le=7 * 86_400,
        description="WAITING_FOR_PLUG_IN without draw this long (s) -> socket released",
    )
    min_start_credit_cents: Whole = Field(
        _CORE.min_start_credit_cents,
        ge=0,
        le=10_000_000,
        description="a driver needs at least this balance to start",
    )
    max_power_w: Number = Field(
        _CORE.max_power_w,
        ge=100,
        le=100_000,
        description="a socket's rated power (W): no interval is billed more than it could deliver",
    )
    reading_jitter_s: Number = Field(
        _seconds(_CORE.reading_jitter_ms),
        ge=0,
        le=600,
        description="readings are stamped when a poll ends: the rated-power check allows each"
        " interval this much more time (s)",
    )
    off_retry_s: Number = Field(
        _seconds(_CORE.off_retry_ms),
        ge=1,
        le=3600,
        description="an OFF the relay has not confirmed is sent again this often (s)",
    )
    give_up_s: Number = Field(
        _seconds(_CORE.give_up_ms),
        ge=10,
        le=86_400,
        description="a relay NOT_RESPONDING this long (s) ends its session, billed as metered",
    )
    relay_settle_s: Number = Field(
        _seconds(_CORE.relay_settle_ms),
        ge=1,
        le=3600,
        description="a relay reading OFF this long (s) after a command while a session wants it on"
        " is switched on again",
    )
    max_relay_restarts: Whole = Field(
        _CORE.max_relay_restarts,
        ge=0,
        le=100,
        description="times a session's relay found off is switched on again before the session"
        " ends",
    )
    clock_step_s: Number = Field(
        _seconds(_CORE.clock_step_ms),
        ge=1,
        le=86_400,
        description="a relay clock this far (s) behind the newest reading has stepped back and is"
        " re-baselined",
    )


class MothershipSettings(_Group):
    tick_s: Number = Field(
        1.0, ge=0.05, le=60, description="how often (s) timeouts and circuit admission are checked"
    )
    checkpoint_s: Number = Field(
        5.0, ge=0.1, le=3600, description="how often (s) open sessions' meters are saved"
    )
    ack_wait_s: Number = Field(
        30.0, ge=1, le=3600, description="an unacked bus message is redelivered after this long (s)"
    )
    max_clock_ahead_s: Number = Field(
        300.0,
        ge=1,
        le=86_400,
        description="readings stamped further ahead (s) of the mothership's clock are refused",
    )
    status_interval_s: Number = Field(
        1.0,
        ge=0.05,
        le=60,
        description="a plug's status is published for the web at most this often (s)",
    )


class CircuitSettings(_Group):
    default_limit_a: Number = Field(
        circuits.DEFAULT_CIRCUIT_LIMIT_A,
        ge=CIRCUIT_LIMIT_A[0],
        le=CIRCUIT_LIMIT_A[1],
        description="limit of a circuit whose site file gives none (A)",
    )
    plug_allowance_a: Number = Field(
        circuits.DEFAULT_PLUG_ALLOWANCE_A,
        ge=1,
        le=1000,
        description="current a car is expected to draw until its socket has charged once (A)",
    )


class LoadManagementSettings(_Group):
    slot_min: Number = Field(
        30.0,
        ge=1,
        le=24 * 60,
        description="a charging car yields to the queue after this long (min) while others wait",
    )
    stagger_s: Number = Field(
        3.0, ge=0, le=600, description="switch-ons on one circuit are this far apart (s)"
    )
    overcurrent_window_s: Number = Field(
        5.0,
        ge=0,
        le=600,
        description="a circuit drawing more than its limit this long (s) sheds its latest plug",
    )
    volts: Number = Field(
        circuits.NOMINAL_VOLTS,
        ge=100,
        le=480,
        description="the supply's voltage, turning measured power into current (V)",
    )


class RelaySettings(_Group):
    poll_interval_s: Number = Field(
        2.0,
        ge=POLL_INTERVAL_S[0],
        le=POLL_INTERVAL_S[1],
        description="how often (s) each relay is read; a site file's poll_interval_s wins",
    )
    outbox_max_messages: Whole = Field(
        200_000,
        ge=1,
        le=100_000_000,
        description="chunks the relay manager keeps on disk while the broker is unreachable;"
        " past this the oldest are dropped (counted)",
    )
    mothership_silent_s: Number = Field(
        60.0,
        ge=10,
        le=3600,
        description="with nothing from the mothership or the broker for this long (s), the"
        " relay manager is on its own: it refuses to switch any socket on",
    )
    unsupervised_max_s: Number = Field(
        1800.0,
        ge=10,
        le=86_400,
        description="sockets on while the relay manager is on its own are switched off this"
        " long (s) after the mothership was last heard (at least mothership_silent_s)",
    )
    over_limit_s: Number = Field(
        10.0,
        ge=1,
        le=600,
        description="a circuit measured over its limit this long (s) has its most recently"
        " started socket switched off by the relay manager, mothership or not (longer than"
        " load.overcurrent_window_s, so a mothership that is there sheds first)",
    )
    dead_man_s: Number = Field(
        120.0,
        ge=15,
        le=3600,
        description="relays with an auto-off timer turn themselves off this long (s) after the"
        " relay manager last renewed it (every third of it while on): a dead Pi's sockets go"
        " off; at least 3 poll intervals",
    )


class TelemetrySettings(_Group):
    batch_rows: Whole = Field(
        5000,
        ge=1,
        le=1_000_000,
        description="readings are written to the database in batches of up to this many",
    )
    batch_delay_s: Number = Field(
        1.0,
        ge=0.01,
        le=60,
        description="a batch is written at the latest this long (s) after it was started",
    )
    writers: Whole = Field(
        2,
        ge=1,
        le=8,
        description="PostgreSQL: full batches written at once, each on its own connection, so"
        " one waits for its commit to reach the disk while the next is written (SQLite: 1)",
    )
    max_buffered_rows: Whole = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="past this many readings waiting for the database, new ones are refused"
        " (past half of it, ingest waits for a write to end)",
    )
    raw_retention_days: Number = Field(
        30,
        ge=1,
        le=36_500,
        description="raw readings are kept this long (days); per-minute rollups are kept for good",
    )
    upkeep_interval_s: Number = Field(
        10.0,
        ge=0.1,
        le=3600,
        description="how often (s) rollups are recomputed, old readings pruned and PostgreSQL's"
        " day partitions made ahead",
    )
    rollup_delay_s: Number = Field(
        60.0,
        ge=0,
        le=3600,
        description="a minute is rolled up once it has been over this long (s), so it is rolled"
        " up once, not at every batch (late readings roll it up again)",
    )
    prune_step_rows: Whole = Field(
        5000,
        ge=100,
        le=1_000_000,
        description="SQLite: old readings are deleted this many at a time, so a write never"
        " waits long for the pruning",
    )


class InfluxSettings(_Group):
    enabled: bool = Field(
        False, description="export readings, transitions and sessions to InfluxDB as well"
    )
    url: str = Field(
        "http://127.0.0.1:8086",
        description="InfluxDB's base URL (the export posts to /write on 1.x, /api/v2/write on 2.x)",
    )
    version: Whole = Field(1, ge=1, le=2, description="InfluxDB's major version")
    database: str = Field("evplug", description="1.x: the database written to")
    username: str | None = Field(None, description="1.x: user name, when authentication is on")
    password: str | None = Field(None, description="1.x: that user's password")
    bucket: str = Field("evplug", description="2.x: the bucket written to")
    org: str = Field("", description="2.x: the organisation that owns the bucket")
    token: str | None = Field(None, description="2.x: an API token allowed to write the bucket")
    batch_points: Whole = Field(
        5000, ge=1, le=100_000, description="points sent to InfluxDB in one request, at most"
    )
    max_queued_points: Whole = Field(
        200_000,
        ge=1,
        le=10_000_000,
        description="points waiting for InfluxDB; past this new ones are dropped (counted)",
    )
    flush_interval_s: Number = Field(
        1.0, ge=0.01, le=600, description="how often (s) queued points are sent"
    )
    max_backoff_s: Number = Field(
        60.0,
        ge=0.1,
        le=3600,
        description="a failing InfluxDB is retried after 0.5 s, then doubling up to this (s)",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8086")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _target(self) -> InfluxSettings:
        if self.enabled and self.version == 2 and not (self.org and self.token):
            raise ValueError(
                "set influx.org and influx.token: InfluxDB 2.x takes writes only with both"
            )
        return self


class AuthSettings(_Group):
    secure_cookies: Literal["auto", "always", "never"] = Field(
        "auto",
        description="mark session cookies Secure: auto when the request came over https (behind"
        " a proxy, pass its X-Forwarded-Proto), always, or never",
    )
    session_idle_days: Number = Field(
        30, ge=0.01, le=365, description="a device not seen for this long (days) is signed out"
    )
    sign_in_attempts: Whole = Field(
        10,
        ge=1,
        le=10_000,
        description="sign-in attempts allowed per IP and email in 5 minutes (5 times it per IP)",
    )
    sign_up_attempts: Whole = Field(
        5, ge=1, le=10_000, description="sign-ups allowed per IP and email an hour (5x per IP)"
    )
    mails_per_hour: Whole = Field(
        5,
        ge=1,
        le=10_000,
        description="account mails (links) sent per IP and address an hour (5x per IP)",
    )


class MailSettings(_Group):
    smtp_host: str | None = Field(
        None,
        description="SMTP server for account mails (none: mails are logged and the demo shows"
        " their links on the page)",
    )
    smtp_port: Whole = Field(587, ge=1, le=65535, description="the SMTP server's port")
    smtp_user: str | None = Field(None, description="SMTP user name, when the server wants one")
    smtp_password: str | None = Field(None, description="SMTP password (prefer the env variable)")
    smtp_tls: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="starttls upgrades the connection, tls connects over TLS (port 465), none:"
        " plain (loopback only)",
    )
    from_address: str = Field("evplug <noreply@localhost>", description="the From of account mails")


class OidcSettings(_Group):
    issuer_url: str | None = Field(
        None,
        description="OpenID Connect issuer for 'Sign in with ...', e.g."
        " https://accounts.google.com (on when the client id and secret are set too)",
    )
    client_id: str | None = Field(None, description="the OIDC client id evplug is registered as")
    client_secret: str | None = Field(
        None, description="the OIDC client's secret (prefer the env variable)"
    )
    name: str = Field(
        "Google",
        min_length=1,
        max_length=40,
        description="the sign-in button says 'Sign in with NAME'",
    )

    @field_validator("issuer_url")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError("must be an https:// URL, e.g. https://accounts.google.com")
        return None if value is None else value.rstrip("/")

    @model_validator(mode="after")
    def _all_or_none(self) -> OidcSettings:
        given = [self.issuer_url, self.client_id, self.client_secret]
        if any(given) and not all(given):
            raise ValueError(
                "set issuer_url, client_id and client_secret together (or none of them)"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.issuer_url is not None


class LogSettings(_Group):
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = Field(
        "info", description="least severe log level written"
    )
    format: Literal["console", "json"] = Field(
        "console", description="how log lines look: console for people, json one object a line"
    )


class Settings(BaseSettings):
    """The whole configuration; ``load_settings`` builds it from every source."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )

    data_dir: Path = Field(Path(".evplug"), description="local state: the default SQLite file")
    database_url: str | None = Field(
        None,
        description="sqlite:///relative/path, sqlite:////absolute/path or"
        " postgresql://user@host/db (default: sqlite, evplug.sqlite3 in the data dir)",
    )
    bus_url: str = Field(
        "memory://", description="memory:// (embedded, one process) or nats://host:port"
    )
    bus_credentials: Path | None = Field(
        None,
        description="NATS credentials file (user JWT and seed) for bus_url; `evplug broker`"
        " admits no one without (its data dir's auth/ holds the mothership's and web's)",
    )
    web: WebSettings = WebSettings()
    price: PriceSettings = PriceSettings()
    plug: PlugSettings = PlugSettings()
    mothership: MothershipSettings = MothershipSettings()
    circuit: CircuitSettings = CircuitSettings()
    load: LoadManagementSettings = LoadManagementSettings()
    relay: RelaySettings = RelaySettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    auth: AuthSettings = AuthSettings()
    mail: MailSettings = MailSettings()
    oidc: OidcSettings = OidcSettings()
    influx: InfluxSettings = InfluxSettings()
    log: LogSettings = LogSettings()
    stripe: StripeSettings = StripeSettings()

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc, _sources.get() or _NO_SOURCES, values)) from None
        except pydantic_settings.SettingsError as exc:  # an env value it cannot even parse
            raise SettingsError([str(exc)]) from None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if scheme == "sqlite" and sep and rest.startswith("/") and rest[1:] not in ("", ":memory:"):
            return value
        if scheme == "postgresql" and sep and rest:
            return value
        raise ValueError(
            "must be sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db"
        )

    @field_validator("bus_url")
    @classmethod
    def _bus_url(cls, value: str) -> str:
        if value == "memory://" or NATS_URL.fullmatch(value):
            return value
        raise ValueError("must be memory:// or nats://host:port")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env or secrets directory: what is read is what the module docstring says.
        file_values = (_sources.get() or _NO_SOURCES).file_values
        return (
            init_settings,
            env_settings,
            InitSettingsSource(settings_cls, _own_env(os.environ)),
            InitSettingsSource(settings_cls, file_values),
        )

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        plug, telemetry = self.plug, self.telemetry
        if plug.complete_below_w >= plug.charge_start_w:
            raise ValueError(
                f"{_named('plug.complete_below_w')}: must be below plug.charge_start_w"
                f" ({figure(plug.charge_start_w)}), got {figure(plug.complete_below_w)}"
            )
        relay = self.relay
        if relay.unsupervised_max_s < relay.mothership_silent_s:
            raise ValueError(
                f"{_named('relay.unsupervised_max_s')}: must be at least"
                f" relay.mothership_silent_s ({figure(relay.mothership_silent_s)}),"
                f" got {figure(relay.unsupervised_max_s)}"
            )
        if telemetry.max_buffered_rows < telemetry.batch_rows:
            raise ValueError(
                f"{_named('telemetry.max_buffered_rows')}: must be at least"
                f" telemetry.batch_rows ({telemetry.batch_rows}),"
                f" got {telemetry.max_buffered_rows}"
            )
        return self

    # -- derived values ------------------------------------------------------------------------

    def effective_database_url(self) -> str:
        """The database URL, with the default SQLite file under the data dir filled in."""
        return self.database_url or f"sqlite:///{self.data_dir / 'evplug.sqlite3'}"

    def effective_public_url(self) -> str:
        """Where drivers reach the web, for links and QR codes."""
        return self.web.public_url or f"http://{self.web.host}:{self.web.port}"

    def plug_settings(self) -> plug.Settings:
        """The state machine's thresholds, in the core's units."""
        p = self.plug
        return plug.Settings(
            charge_start_w=p.charge_start_w,
            complete_below_w=p.complete_below_w,
            complete_window_ms=_ms(p.complete_window_s),
            complete_min_readings=p.complete_min_readings,
            command_timeout_ms=_ms(p.command_timeout_s),
            no_draw_timeout_ms=_ms(p.no_draw_timeout_s),
            no_car_timeout_ms=_ms(p.no_car_timeout_s),
            min_start_credit_cents=p.min_start_credit_cents,
            max_power_w=p.max_power_w,
            reading_jitter_ms=_ms(p.reading_jitter_s),
            off_retry_ms=_ms(p.off_retry_s),
            give_up_ms=_ms(p.give_up_s),
            relay_settle_ms=_ms(p.relay_settle_s),
            max_relay_restarts=p.max_relay_restarts,
            clock_step_ms=_ms(p.clock_step_s),
        )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# -- loading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flag:
    """A setting given on the command line: its dotted name, the flag, and the raw value."""

    setting: str  # e.g. "web.port"
    name: str  # e.g. "--port"
    value: object


@dataclass(frozen=True, slots=True)
class _Sources:
    """What ``load_settings`` was given, for the sources and for naming a wrong value's origin."""

    file: Path | None
    file_values: Mapping[str, Any]
    flags: tuple[Flag, ...] = ()


_NO_SOURCES = _Sources(None, {})
_sources: ContextVar[_Sources | None] = ContextVar("evplug_settings_sources", default=None)


def load_settings(config_file: Path | None = None, flags: tuple[Flag, ...] = ()) -> Settings:
    """Defaults < the TOML file (``config_file`` or ``$EVPLUG_CONFIG``) < env < ``flags``."""
    problems = _unknown_env(os.environ)
    if problems:
        raise SettingsError(problems)
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = Path(os.environ[CONFIG_ENV])
    file_values = _read_toml(config_file) if config_file is not None else {}
    init: dict[str, Any] = {}
    for flag in flags:
        _put(init, flag.setting.split("."), flag.value)
    token = _sources.set(_Sources(config_file, file_values, flags))
    try:
        return Settings(**init)
    finally:
        _sources.reset(token)


def _put(tree: dict[str, Any], path: list[str], value: object) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError([f"{path}: cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([f"{path}: {exc}"]) from None


# -- naming and explaining ---------------------------------------------------------------------


def env_name(setting: str) -> str:
    """``web.port`` -> ``EVPLUG_WEB__PORT``; ``stripe.secret_key`` -> ``STRIPE_SECRET_KEY``."""
    if setting in OWN_ENV:
        return OWN_ENV[setting]
    return ENV_PREFIX + setting.upper().replace(".", NESTED)


def fields() -> Iterator[tuple[str, FieldInfo]]:
    """Every leaf setting as (dotted name, field), in declaration order."""
    for name, info in Settings.model_fields.items():
        group = info.annotation
        if isinstance(group, type) and issubclass(group, _Group):
            for leaf, leaf_info in group.model_fields.items():
                yield f"{name}.{leaf}", leaf_info
        else:
            yield name, info


def accepts(info: FieldInfo) -> str:
    """What a field accepts, in words: ``a whole number 1..65535``."""
    low = next((m.ge for m in info.metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in info.metadata if isinstance(m, Le)), None)
    kind = info.annotation
    if kind in (int, float):
        noun = "a whole number" if kind is int else "a number"
        if low is None or high is None:
            return noun
        return f"{noun} {figure(low)}..{figure(high)}"
    if kind is bool:
        return "true or false"
    choices = get_args(kind)
    if choices and all(isinstance(c, str) for c in choices):
        return "one of " + ", ".join(choices)
    return "text"


def figure(value: float) -> str:
    """A bound or default as people write it: 1000000, 0.2, 8000."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _field(loc: tuple[str | int, ...]) -> FieldInfo | None:
    dotted = ".".join(str(p) for p in loc)
    return dict(fields()).get(dotted)


def _named(dotted: str) -> str:
    return _where(dotted, _sources.get() or _NO_SOURCES, {})


def _where(dotted: str, sources: _Sources, init: Mapping[str, Any]) -> str:
    flag = next((f.name for f in sources.flags if f.setting == dotted), None)
    if flag is not None:
        return flag
    if _lookup(init, dotted) is not _MISSING:
        return dotted
    env = env_name(dotted)
    if env in {k.upper() for k in os.environ}:
        return env
    if sources.file is not None and _lookup(sources.file_values, dotted) is not _MISSING:
        return f"{sources.file}: {dotted}"
    return dotted


_MISSING = object()


def _lookup(tree: Mapping[str, Any], dotted: str) -> object:
    node: object = tree
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _describe(exc: ValidationError, sources: _Sources, init: Mapping[str, Any]) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if isinstance(p, str))
        if not loc:  # a rule across settings, whose message names them
            problems.append(str(error["ctx"]["error"]))
            continue
        where = _where(".".join(loc), sources, init)
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown setting (known: {_known_near(loc)})")
            continue
        info = _field(loc)
        if info is not None and info.annotation in (int, float):
            accepted = f"must be {accepts(info)}"
        elif error["type"] == "value_error":
            accepted = str(error["ctx"]["error"])
        elif info is None:
            accepted = "must be a table of settings"
        else:
            accepted = f"must be {accepts(info)}"
        problems.append(f"{where}: {accepted}, got {_shown(error['input'])}")
    return problems


def _shown(value: object) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)


def _known_near(loc: tuple[str, ...]) -> str:
    model: type[BaseModel] = Settings
    if len(loc) > 1:
        group = Settings.model_fields[loc[0]].annotation
        assert isinstance(group, type) and issubclass(group, BaseModel)
        model = group
    return ", ".join(model.model_fields)


def _unknown_env(environ: Mapping[str, str]) -> list[str]:
    """``EVPLUG_*`` variables that name no setting: a typo would otherwise be ignored."""
    known = [CONFIG_ENV, *(env_name(d) for d, _ in fields())]
    problems = []
    for key in environ:
        if key.upper().startswith(ENV_PREFIX) and key.upper() not in known:
            near = difflib.get_close_matches(key.upper(), known, n=1)
            hint = f"did you mean {near[0]}?" if near else "see Configuration in README.md"
            problems.append(f"{key}: unknown setting ({hint})")
    return problems
