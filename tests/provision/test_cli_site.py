"""`evplug site ...` as an operator runs it, and a site's relay manager on what it hands out."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from evplug.bus.broker import Broker, free_port, start_broker
from evplug.cli import main
from evplug.relay.site_config import load_site_config
from tests.processes import Process, Processes

pytestmark = pytest.mark.integration
DATA = "data"  # the operator's data dir: the broker's is data/nats


@pytest.fixture
def operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Processes, Broker]]:
    """A broker, and the operator's shell beside it: `evplug site` runs in this process."""
    broker = start_broker("127.0.0.1", free_port(), tmp_path / DATA / "nats")
    procs = Processes(tmp_path, {"EVPLUG_BUS_URL": broker.url})
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("EVPLUG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EVPLUG_BUS_URL", broker.url)
    try:
        yield procs, broker
    finally:
        procs.stop_all()
        broker.stop()


def evplug_site(*args: str) -> tuple[int, str, str]:
    """``evplug site ARGS --data-dir data``: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    logging = structlog.get_config()  # the command sets up its logs, on the stderr given here
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["site", *args, "--data-dir", DATA])
    finally:
        structlog.configure(**logging)
    return code, out.getvalue(), err.getvalue()


def site(procs: Processes, *args: str) -> str:
    code, out, err = evplug_site(*args)
    assert code == 0, err
    return out


def start_relay(procs: Processes, site_file: Path) -> Process:
    """The relay manager with nothing but its site file: the bus is the file's ``[bus]``."""
    relay_args = ["--config", str(site_file), "--port", str(free_port()), "--data-dir", "relay"]
    return procs.start("relay", "relay", *relay_args, env={"EVPLUG_BUS_URL": ""})


def last_line(process: Process) -> str:
    return process.output().strip().splitlines()[-1]


def test_create_writes_a_site_file_and_credentials_and_prints_the_site_id_last(
    operator: tuple[Processes, Broker], tmp_path: Path
) -> None:
    procs, broker = operator
    out = site(procs, "create", "North Garage 2", "--out", "north")
    assert out.splitlines()[-1] == "north-garage-2"
    config = load_site_config(tmp_path / "north" / "site.toml")
    assert (config.site_id, config.bus_url) == ("north-garage-2", broker.url)
    assert config.bus_credentials == tmp_path / "north" / "site.creds"
    assert stat.S_IMODE(config.bus_credentials.stat().st_mode) == 0o600
    assert "north-garage-2\tactive\t" in site(procs, "list")
    with sqlite3.connect(tmp_path / DATA / "evplug.sqlite3") as db:  # the store knows it too
        assert db.execute("SELECT name FROM sites WHERE id = 'north-garage-2'").fetchone() == (
            "North Garage 2",
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "garage", "--out", "again"), "site 'garage' exists: `evplug site rotate-key"),
        (("create", "!!", "--out", "x"), "site name '!!' has no letters or digits"),
        (("revoke", "nowhere"), "no site 'nowhere' in "),
        (("rotate-key", "nowhere"), "no site 'nowhere' in "),
    ],
)
def test_a_wrong_site_command_is_one_line_and_changes_nothing(
    operator: tuple[Processes, Broker], args: tuple[str, ...], message: str
) -> None:
    procs, _ = operator
    site(procs, "create", "garage", "--out", "garage")
    before = site(procs, "list")
    code, out, err = evplug_site(*args)
    [line] = err.strip().splitlines()
    assert (code, out) == (2, "")
    assert line.startswith(f"evplug site {args[0]}: {message}"), line
    assert site(procs, "list") == before


def test_a_revoked_site_s_relay_manager_exits_naming_the_cause_and_cannot_come_back(
    operator: tuple[Processes, Broker], tmp_path: Path
) -> None:
    procs, broker = operator
    site(procs, "create", "garage", "--out", "garage")
    site_file = tmp_path / "garage" / "site.toml"
    relay = start_relay(procs, site_file)
    relay.wait_for_line("relay ready")
    server = broker.process.pid
    site(procs, "revoke", "garage")
    assert relay.process.wait(20) == 2
    assert last_line(relay) == (
        f"evplug relay: the broker at {broker.url} cut us off: the credentials in"
        f" {site_file.parent / 'site.creds'}: user authentication revoked: ask the operator for"
        " new ones (`evplug site rotate-key SITE`)"
    )
    again = start_relay(procs, site_file)
    assert again.process.wait(20) == 2
    [line] = again.output().strip().splitlines()
    assert line.startswith(f"evplug relay: the broker at {broker.url} refused the credentials")
    assert "garage\trevoked\t" in site(procs, "list")
    assert broker.process.poll() is None and broker.process.pid == server  # never restarted


def test_after_rotate_key_the_relay_on_the_old_credentials_exits_and_one_on_the_new_runs(
    operator: tuple[Processes, Broker], tmp_path: Path
) -> None:
    procs, _ = operator
    site(procs, "create", "garage", "--out", "garage")
    old = start_relay(procs, tmp_path / "garage" / "site.toml")
    old.wait_for_line("relay ready")
    assert site(procs, "rotate-key", "garage", "--out", "rotated").splitlines()[-1] == "garage"
    assert old.process.wait(20) == 2
    # The new credentials beside the unchanged site file.
    (tmp_path / "rotated" / "site.toml").write_text((tmp_path / "garage" / "site.toml").read_text())
    new = start_relay(procs, tmp_path / "rotated" / "site.toml")
    new.wait_for_line("relay ready")
    assert new.terminate() == 0


def test_a_credentials_file_that_is_not_one_is_one_line_naming_it(
    operator: tuple[Processes, Broker], tmp_path: Path
) -> None:
    procs, _ = operator
    site(procs, "create", "garage", "--out", "garage")
    creds = tmp_path / "garage" / "site.creds"
    creds.write_text("not credentials\n")
    relay = start_relay(procs, tmp_path / "garage" / "site.toml")
    assert relay.process.wait(20) == 2
    [line] = relay.output().strip().splitlines()
    assert line == (
        f"evplug relay: {creds}: not a NATS credentials file (no user JWT and seed blocks):"
        " write a new one with `evplug site rotate-key`"
    )
