"""``evplug``: the command line. Bad input is one line on stderr and a non-zero exit.

Flags that set a setting (``--port``, ``--data-dir``, ``--log-level``, ``--log-json``) win over
``EVPLUG_*`` variables, which win over the ``--config`` file; ``evplug.settings`` checks them all.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from evplug import logs
from evplug.settings import CONFIG_ENV, Flag, Settings, SettingsError, load_settings

# argparse dest -> (setting, flag): passed to the settings as given, checked there.
_SETTING_FLAGS = {
    "log_level": ("log.level", "--log-level"),
    "port": ("web.port", "--port"),
    "data_dir": ("data_dir", "--data-dir"),
}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not a usage dump: say what is wrong and where to look.
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evplug", description=__doc__)
    parser.add_argument(
        "--config", type=Path, help=f"a TOML file of settings (default: ${CONFIG_ENV}, if set)"
    )
    parser.add_argument("--log-level", help="debug, info (default), warning or error")
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo", help="the whole system in one process, embedded defaults")
    demo.add_argument("--port", help="web port (default 8000)")
    demo.add_argument("--data-dir", help="where the SQLite file lives (default .evplug)")
    demo.add_argument("--plugs", type=int, help="simulated plugs, 1..64 (default 4)")
    demo.add_argument(
        "--speed", type=float, help="simulated seconds per real second (60; smoke, queue: 300)"
    )
    demo.add_argument(
        "--car-kwh", type=float, help="energy each simulated car needs (8; smoke: 1.5; queue: 1)"
    )
    demo.add_argument(
        "--scenario", choices=["smoke", "queue"], help="run a scenario headless and exit"
    )
    demo.add_argument(
        "--site-config",
        type=Path,
        help="a site's TOML file: its real relays replace the simulation",
    )

    demo.add_argument(
        "--bus",
        choices=["memory", "nats"],
        default="memory",
        help="nats: through a broker the demo starts (default memory: in the process)",
    )

    mothership = commands.add_parser(
        "mothership", help="the plugs' state machines and billing, on EVPLUG_BUS_URL"
    )
    mothership.add_argument("--port", help="HTTP port for /healthz and /metrics (default 8000)")
    mothership.add_argument("--data-dir", help="where the default SQLite file lives")
    mothership.add_argument(
        "--site",
        type=Path,
        action="append",
        default=[],
        help="a site's TOML file: register the site (repeatable); its relay's announcement is"
        " refused until it is registered",
    )

    web = commands.add_parser("web", help="the drivers' web app, on EVPLUG_BUS_URL")
    web.add_argument("--port", help="web port (default 8000)")
    web.add_argument("--data-dir", help="where the default SQLite file lives")

    relay = commands.add_parser(
        "relay", help="a site's relay manager: polls its relays, publishes to EVPLUG_BUS_URL"
    )
    relay.add_argument(
        "--config", dest="site_file", type=Path, required=True, help="the site's TOML file"
    )
    relay.add_argument("--port", help="status page, /healthz and /metrics port (default 8000)")
    relay.add_argument("--data-dir", help="where its outbox lives (default .evplug)")

    driver = commands.add_parser("driver", help="add a driver (with credit) to the store")
    driver.add_argument("driver_id")
    driver.add_argument("--credit-cents", type=_positive_int, help="credit to add")
    driver.add_argument("--data-dir", help="where the default SQLite file lives")

    broker = commands.add_parser(
        "broker", help="a local NATS server (JetStream on) for evplug's parts to share"
    )
    broker.add_argument("--port", dest="broker_port", type=_port, default=4222, help="default 4222")
    broker.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine)")
    broker.add_argument("--data-dir", help="its store goes in DATA_DIR/nats (default .evplug/nats)")

    emulate = commands.add_parser("emulate", help="serve an HTTP API that behaves like a relay")
    emulate.add_argument(
        "model", help="e.g. shelly-pro4pm, shelly-plugs-gen1, tasmota-4ch, sonoff-spm"
    )
    emulate.add_argument("--port", type=_port, required=True)
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.add_argument("--password", help="require this password, as the device would")
    emulate.add_argument("--mdns", action="store_true", help="announce it over mDNS (multicast!)")

    devices = commands.add_parser("devices", help="technician tools for relays on the LAN")
    device_commands = devices.add_subparsers(dest="devices_command", required=True)
    probe = device_commands.add_parser("probe", help="which relay answers at URL, and its plugs")
    probe.add_argument("url", help="e.g. http://192.168.1.50 or http://127.0.0.1:8081")
    probe.add_argument("--username")
    probe.add_argument("--password")
    probe.add_argument("--timeout", type=_positive_float, default=3.0, help="seconds per request")
    discover = device_commands.add_parser("discover", help="list the relays mDNS finds")
    discover.add_argument("--seconds", type=_positive_float, default=5.0, help="how long to listen")

    site = commands.add_parser(
        "site", help="sites and their broker credentials (run it where the broker's data dir is)"
    )
    site_commands = site.add_subparsers(dest="site_command", required=True, parser_class=_Parser)
    create = site_commands.add_parser("create", help="a new site: OUT/site.toml and OUT/site.creds")
    create.add_argument("name", help="the site's name; its id is made from it (e.g. garage-7)")
    create.add_argument("--out", type=Path, required=True, help="where the site's files go")
    rotate = site_commands.add_parser(
        "rotate-key", help="new credentials; the old ones stop working"
    )
    rotate.add_argument("site_id")
    rotate.add_argument(
        "--out", type=Path, default=Path("."), help="where site.creds goes (default .)"
    )
    revoke = site_commands.add_parser("revoke", help="cut a site off the broker for good")
    revoke.add_argument("site_id")
    site_commands.add_parser("list", help="every site, its state and when its key was issued")
    for command in (create, rotate, revoke, site_commands.choices["list"]):
        command.add_argument(
            "--data-dir", help="the broker's data dir is DATA_DIR/nats (default .evplug)"
        )

    db = commands.add_parser("db", help="the database's schema (EVPLUG_DATABASE_URL)")
    db_commands = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    for name, what in (
        ("upgrade", "apply the migrations this evplug has that the database lacks"),
        ("current", "print the database's schema revision"),
    ):
        db_command = db_commands.add_parser(name, help=what)
        db_command.add_argument("--data-dir", help="where the default SQLite file lives")

    ledger = commands.add_parser("ledger", help="the money ledger (EVPLUG_DATABASE_URL)")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    check = ledger_commands.add_parser(
        "check", help="every account whose cached balance is not the sum of its entries"
    )
    check.add_argument("--data-dir", help="where the default SQLite file lives")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, _flags(args))
    except SettingsError as exc:
        return _fail("evplug", exc)
    level = settings.log.level
    if getattr(args, "scenario", None) and "level" not in settings.log.model_fields_set:
        level = "warning"  # a scenario's output is its one JSON line
    logs.configure(level, settings.log.format == "json")
    if args.command == "demo":
        return _demo(args, settings)
    if args.command == "emulate":
        return _emulate(args)
    if args.command == "broker":
        return _broker(args, settings)
    if args.command == "db":
        return _db(args, settings)
    if args.command == "site":
        return _site(args, settings)
    if args.command == "ledger":
        return _ledger_check(settings)
    if args.command in ("mothership", "web", "relay"):
        return _part(args, settings)
    if args.command == "driver":
        return _driver(args, settings)
    from evplug.devices import technician

    if args.devices_command == "probe":
        return technician.probe_command(args.url, args.username, args.password, args.timeout)
    return technician.discover_command(args.seconds)


def _flags(args: argparse.Namespace) -> tuple[Flag, ...]:
    flags = [
        Flag(setting, name, getattr(args, dest))
        for dest, (setting, name) in _SETTING_FLAGS.items()
        if getattr(args, dest, None) is not None
    ]
    if args.log_json:
        flags.append(Flag("log.format", "--log-json", "json"))
    return tuple(flags)


def _fail(prog: str, error: Exception) -> int:
    for line in str(error).splitlines():
        print(f"{prog}: {line}", file=sys.stderr)
    return 2


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from evplug import demo
    from evplug.assembly import StartupError
    from evplug.bus.broker import BrokerError

    options = demo.demo_options(
        args.scenario, args.site_config, args.plugs, args.speed, args.car_kwh
    )
    try:
        return demo.run(settings, options, args.scenario, args.bus)
    except (SettingsError, StartupError, BrokerError) as exc:
        return _fail("evplug demo", exc)


def _part(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from evplug import processes
    from evplug.assembly import StartupError
    from evplug.bus.base import BusRefused

    async def run() -> None:
        if args.command == "mothership":
            part = await processes.mothership_part(settings, args.site)
        elif args.command == "web":
            part = await processes.web_part(settings)
        else:
            part = await processes.relay_part(settings, args.site_file)
        await processes.run_part(part, settings.web.host, settings.web.port)

    try:
        asyncio.run(run())
    except (SettingsError, StartupError, BusRefused) as exc:
        return _fail(f"evplug {args.command}", exc)
    return 0


def _driver(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from evplug import assembly
    from evplug.assembly import StartupError

    try:
        print(asyncio.run(assembly.add_driver(settings, args.driver_id, args.credit_cents or 0)))
    except (SettingsError, StartupError) as exc:
        return _fail("evplug driver", exc)
    return 0


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    from evplug.bus.broker import BrokerError, run_broker

    try:
        return run_broker(args.host, args.broker_port, settings.data_dir / "nats")
    except BrokerError as exc:
        return _fail("evplug broker", exc)


def _site(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import time

    from evplug import assembly
    from evplug.provision.authority import ProvisionError

    command = args.site_command
    try:
        if command == "list":
            for site in assembly.list_sites(settings):
                issued = time.strftime("%Y-%m-%d %H:%M", time.gmtime(site.key_issued))
                state = "revoked" if site.revoked else "active"
                print(f"{site.site_id}\t{state}\tkey issued {issued} UTC\t{site.name}")
            return 0
        if command == "create":
            site_id, notes = asyncio.run(assembly.create_site(settings, args.name, args.out))
        elif command == "rotate-key":
            site_id = args.site_id
            notes = asyncio.run(assembly.rotate_site_key(settings, site_id, args.out))
        else:
            site_id = args.site_id
            notes = asyncio.run(assembly.revoke_site(settings, site_id))
    except (SettingsError, ProvisionError, ValueError) as exc:
        return _fail(f"evplug site {command}", exc)
    for note in notes:
        print(note, file=sys.stderr)
    print(site_id)
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from evplug import assembly
    from evplug.store import schema

    try:
        if args.db_command == "upgrade":
            revision = asyncio.run(assembly.upgrade_database(settings))
        else:
            revision = asyncio.run(assembly.database_revision(settings))
    except (SettingsError, assembly.StartupError) as exc:
        return _fail(f"evplug db {args.db_command}", exc)
    head = schema.head()
    if revision == head:
        print(f"{revision} (head)")
    else:
        print(f"{revision or 'none (empty)'} (head is {head}: run `{schema.UPGRADE_COMMAND}`)")
    return 0


def _ledger_check(settings: Settings) -> int:
    """Exit 0 when every cached balance is its ledger's sum, 1 (listing them) when not."""
    import asyncio

    from evplug import assembly

    try:
        mismatches = asyncio.run(assembly.check_ledger(settings))
    except (SettingsError, assembly.StartupError) as exc:
        return _fail("evplug ledger check", exc)
    for m in mismatches:
        print(
            f"{m.user_id}: cached balance {m.cached_cents} cents, ledger sum {m.sum_cents} cents"
            f" (off by {m.cached_cents - m.sum_cents})"
        )
    if mismatches:
        print(
            f"evplug ledger check: {len(mismatches)} account(s) whose balance is not the sum of"
            " its entries: the entries are the truth; find what wrote the balance outside a"
            " posting before correcting it",
            file=sys.stderr,
        )
        return 1
    print("ledger ok: every balance is the sum of its entries")
    return 0


def _emulate(args: argparse.Namespace) -> int:
    from evplug.devices.emulators.runner import MODELS, run_emulator_forever

    if args.model not in MODELS:
        print(
            f"evplug emulate: no model {args.model!r}; known: {', '.join(MODELS)}", file=sys.stderr
        )
        return 2
    try:
        run_emulator_forever(args.model, args.host, args.port, args.password, args.mdns)
    except OSError as exc:
        print(
            f"evplug emulate: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
