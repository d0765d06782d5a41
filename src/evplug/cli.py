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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "scenario", None) is not None
    logs.configure(
        "warning" if quiet and args.log_level == "info" else args.log_level, args.log_json
    )
    if args.command == "demo":
        from evplug import demo

        smoke = args.scenario == "smoke"
        options = demo.DemoOptions(
            data_dir=args.data_dir,
            plugs=args.plugs,
            port=args.port,
            speed=args.speed or (300.0 if smoke else 60.0),
            car_need_wh=(args.car_kwh or (1.5 if smoke else 8.0)) * 1000,
        )
        try:
            return demo.run(options, args.scenario)
        except demo.DemoError as exc:
            print(f"evplug demo: {exc}", file=sys.stderr)
            return 2
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
