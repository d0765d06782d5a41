"""``evplug``: the command line. Bad input is one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from evplug import logs


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
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not a usage dump: say what is wrong and where to look.
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evplug", description=__doc__)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo", help="the whole system in one process, embedded defaults")
    demo.add_argument("--port", type=_port, default=8000)
    demo.add_argument("--data-dir", type=Path, default=Path(".evplug"))
    demo.add_argument("--plugs", type=_positive_int, default=4)
    demo.add_argument(
        "--speed", type=_positive_float, help="simulated seconds per real second (60; smoke: 300)"
    )
    demo.add_argument(
        "--car-kwh", type=_positive_float, help="energy each simulated car needs (8; smoke: 1.5)"
    )
    demo.add_argument("--scenario", choices=["smoke"], help="run a scenario headless and exit")
    demo.add_argument(
        "--site-config",
        type=Path,
        help="a site's TOML file: its real relays replace the simulation",
    )

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "scenario", None) is not None
    logs.configure(
        "warning" if quiet and args.log_level == "info" else args.log_level, args.log_json
    )
    if args.command == "demo":
        return _demo(args)
    if args.command == "emulate":
        return _emulate(args)
    from evplug.devices import technician

    if args.devices_command == "probe":
        return technician.probe_command(args.url, args.username, args.password, args.timeout)
    return technician.discover_command(args.seconds)


def _demo(args: argparse.Namespace) -> int:
    from evplug import demo

    smoke = args.scenario == "smoke"
    # Real relays run in real time; simulated cars can be hurried.
    default_speed = 1.0 if args.site_config else 300.0 if smoke else 60.0
    options = demo.DemoOptions(
        data_dir=args.data_dir,
        plugs=args.plugs,
        port=args.port,
        speed=args.speed or default_speed,
        car_need_wh=(args.car_kwh or (1.5 if smoke else 8.0)) * 1000,
        site_config=args.site_config,
    )
    try:
        return demo.run(options, args.scenario)
    except demo.DemoError as exc:
        print(f"evplug demo: {exc}", file=sys.stderr)
        return 2


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
