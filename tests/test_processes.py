"""The four processes of a deployment, apart, on loopback: broker, mothership, web and relay
manager (against an emulated Shelly Pro 4PM). The README's four-terminal walk-through."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from evplug.contracts import evplug_pb2 as pb
from evplug.contracts.wire import unpack
from tests.processes import Processes, eventually, ports
from tests.web.served import Inbox, smtp_server

PASSWORD = "correct horse battery"
CSRF = "evplug_csrf"

pytestmark = pytest.mark.integration
SITE = "garage-7"
AUTH = Path("broker") / "nats" / "auth"  # the broker's trust, made by its first start


def credentials(user: str) -> dict[str, str]:
    """The environment of a server part on the broker: its own service user."""
    return {"EVPLUG_BUS_CREDENTIALS": str(AUTH / f"{user}.creds")}


def devices(emulator_port: int) -> str:
    return (
        f'[[devices]]\ndriver = "shelly_rpc"\nurl = "http://127.0.0.1:{emulator_port}"\n'
        'fuze_id = "A"\nfuze_limit_a = 32\n'
    )


def site_file(directory: Path, emulator_port: int) -> Path:
    path = directory / "site.toml"
    path.write_text(f'site_id = "{SITE}"\npoll_interval_s = 0.5\n\n{devices(emulator_port)}')
    return path


Deployment = tuple[Processes, dict[str, int], Path, Inbox]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """The processes' harness, their ports, the site file, and the inbox of a real SMTP server
    on loopback that the web processes mail through."""
    names = ["broker", "emulator", "mothership", "web", "relay", "web2"]
    port = dict(zip(names, ports(len(names)), strict=True))
    with smtp_server() as (inbox, smtp_port):
        env = {
            "EVPLUG_BUS_URL": f"nats://127.0.0.1:{port['broker']}",
            "EVPLUG_DATABASE_URL": f"sqlite:///{tmp_path / 'server' / 'evplug.sqlite3'}",
            "EVPLUG_MAIL__SMTP_HOST": "127.0.0.1",
            "EVPLUG_MAIL__SMTP_PORT": str(smtp_port),
            "EVPLUG_MAIL__SMTP_TLS": "none",
        }
        procs = Processes(tmp_path, env)
        try:
            yield procs, port, tmp_path / "site" / "site.toml", inbox
        finally:
            procs.stop_all()


def start_all(procs: Processes, port: dict[str, int], site: Path) -> None:
    """In the walk-through's order; each ready when its ready line is out."""
    procs.start("broker", "broker", "--port", str(port["broker"]), "--data-dir", "broker")
    procs.running[-1].wait_for_line("broker ready")
    procs.start("emulator", "emulate", "shelly-pro4pm", "--port", str(port["emulator"]))
    procs.running[-1].wait_for_line("at http://")
    procs.run("db", "upgrade")
    provision(procs, site, port["emulator"])
    mothership = ["--port", str(port["mothership"]), "--site", str(site)]
    procs.start("mothership", "mothership", *mothership, env=credentials("mothership"))
    procs.running[-1].wait_for_line("mothership ready")
    procs.start("web", "web", "--port", str(port["web"]), env=credentials("web"))
    procs.running[-1].wait_for_line("web ready")
    relay_args = ["--config", str(site), "--port", str(port["relay"]), "--data-dir", "relay"]
    procs.start("relay", "relay", *relay_args)
    procs.running[-1].wait_for_line("relay ready")


def provision(procs: Processes, site: Path, emulator_port: int) -> None:
    """The site and its credentials, as an operator creates them; its relay, as a technician
    adds it to the site file."""
    out = procs.run("site", "create", "Garage 7", "--data-dir", "broker", "--out", str(site.parent))
    assert out.splitlines()[-1] == SITE
    site.write_text(f"poll_interval_s = 0.5\n{site.read_text()}\n{devices(emulator_port)}")


class Driver:
    """What a signed-in driver does and sees through one web process's HTTP API."""

    def __init__(self, port: int, database: Path, cookies: httpx.Cookies | None = None) -> None:
        self.web = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, cookies=cookies)
        self.database = database
        self.web.get("/")  # the CSRF cookie, as a browser gets it with its first page

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        # As the page's script does: the token the server set on an earlier answer.
        return self.web.post(path, json=body, headers={"x-csrf-token": self.web.cookies[CSRF]})

    def sign_up(self, email: str, inbox: Inbox) -> str:
        """Sign up and verify by the link mailed to ``email``; the user id."""
        signed_up = self.post("/api/v1/auth/signup", {"email": email, "password": PASSWORD})
        assert signed_up.status_code == 202, signed_up.text
        [mail] = eventually(lambda: inbox.to(email), what=f"the mail to {email}")
        link = re.search(r"https?://\S+token=[\w-]+", mail.get_payload(decode=True).decode())
        assert link is not None, mail.as_string()
        token = parse_qs(urlsplit(link.group(0)).query)["token"][0]
        verified = self.post("/api/v1/auth/verify", {"token": token})
        assert verified.status_code == 200, verified.text
        return verified.json()["user_id"]

    def idle_plug(self) -> str:
        def idle() -> str | None:
            with sqlite3.connect(self.database) as db:
                ids = [plug_id for (plug_id,) in db.execute("SELECT id FROM plugs")]
            return next((p for p in ids if self.plug(p).get("state") == "ACCOUNT_NULL"), None)

        plug_id = eventually(idle, what="a plug idle in the web's live view")
        assert plug_id is not None
        return plug_id

    def plug(self, plug_id: str) -> dict[str, Any]:
        return self.web.get(f"/api/v1/plugs/{plug_id}").json()

    def press(self, plug_id: str, prompt: str) -> None:
        """Until the mothership takes it (a restarted one may not answer at once)."""

        def taken() -> bool:
            answer = self.post(f"/api/v1/plugs/{plug_id}/prompts", {"prompt": prompt})
            return answer.status_code == 200

        eventually(taken, what=f"{prompt!r} taken")

    def until_charging(self, plug_id: str) -> None:
        eventually(lambda: self.plug(plug_id)["state"] == "CHARGING", what="charging")

    def billed(self) -> tuple[dict[str, Any], int]:
        """The driver's newest session once it has ended, and the balance then."""

        def ended() -> dict[str, Any] | None:
            sessions = self.web.get("/api/v1/sessions").json()["sessions"]
            return sessions[0] if sessions and not sessions[0]["running"] else None

        session = eventually(ended, what="the session billed in /api/v1/sessions")
        assert session is not None
        assert len(self.web.get("/api/v1/sessions").json()["sessions"]) == 1  # billed once
        return session, self.web.get("/api/v1/money").json()["balance_cents"]


def credited_driver(procs: Processes, port: int, inbox: Inbox) -> Driver:
    """A driver signed up and in on the web at ``port``, with $20 posted by the operator."""
    driver = Driver(port, procs.workdir / "server" / "evplug.sqlite3")
    user_id = driver.sign_up("driver@example.com", inbox)
    procs.run("driver", user_id, "--credit-cents", "2000")
    return driver


def test_four_processes_bill_a_session_a_driver_starts_and_stops_through_two_webs(
    deployment: Deployment,
) -> None:
    procs, port, site, inbox = deployment
    start_all(procs, port, site)
    for part in ("mothership", "web", "relay"):
        health = httpx.get(f"http://127.0.0.1:{port[part]}/healthz")
        assert health.status_code == 200, (part, health.text)
        assert "evplug_" in httpx.get(f"http://127.0.0.1:{port[part]}/metrics").text
    driver = credited_driver(procs, port["web"], inbox)
    plug_id = driver.idle_plug()
    # A second web process beside the first: its own live view, the same plugs and sign-ins.
    web2 = procs.start("web2", "web", "--port", str(port["web2"]), env=credentials("web"))
    web2.wait_for_line("web ready")
    Driver(port["web2"], driver.database, driver.web.cookies).press(plug_id, "Enable Socket")
    # The first web process sees what the second set going.
    eventually(
        lambda: (
            driver.plug(plug_id)["state"] == "CHARGING" and driver.plug(plug_id)["energy_wh"] >= 4
        ),
        what="the car charging through the relay",
    )
    driver.press(plug_id, "Disable Socket")
    session, balance = driver.billed()
    assert session["plug_id"] == plug_id and session["end_reason"] == "driver"
    assert session["energy_wh"] > 0
    assert balance == 2000 - session["cost_cents"]
    relay_page = httpx.get(f"http://127.0.0.1:{port['relay']}/").text
    assert plug_id in relay_page
    for process in reversed(procs.running):  # SIGTERM: each stops cleanly, exit 0
        assert process.terminate() == 0, process.output()
    for process in procs.running:  # each part's own credentials were enough for all it did
        assert "permissions violation" not in process.output(), process.output()


def test_a_relay_manager_pointed_at_a_wrong_broker_exits_with_one_line(tmp_path: Path) -> None:
    [nothing] = ports(1)
    procs = Processes(tmp_path, {"EVPLUG_BUS_URL": f"nats://127.0.0.1:{nothing}"})
    relay = procs.start("relay", "relay", "--config", str(site_file(tmp_path, 9)))
    assert relay.process.wait(30) == 2
    [line] = relay.output().strip().splitlines()
    assert line.startswith("evplug relay: ") and f"127.0.0.1:{nothing}" in line
    assert "evplug broker" in line  # names the fix


def test_the_demo_runs_its_smoke_session_through_a_broker_it_starts(tmp_path: Path) -> None:
    procs = Processes(tmp_path, {})
    out = procs.run("demo", "--bus", "nats", "--scenario", "smoke", "--data-dir", "data")
    assert '"reason": "complete"' in out and "CHARGING" in out
    assert (tmp_path / "data" / "nats" / "jetstream").is_dir()  # the broker's store was used


def rows(database: Path, sql: str, *args: object) -> int:
    with sqlite3.connect(database) as db:
        return int(db.execute(sql, args).fetchone()[0])


def test_a_relay_manager_killed_during_a_broker_outage_loses_nothing_and_bills_once(
    deployment: Deployment,
) -> None:
    procs, port, site, inbox = deployment
    start_all(procs, port, site)
    broker, relay = procs.running[0], procs.running[-1]
    outbox = procs.workdir / "relay" / f"relay-outbox-{SITE}.sqlite3"
    driver = credited_driver(procs, port["web"], inbox)
    plug_id = driver.idle_plug()
    driver.press(plug_id, "Enable Socket")
    driver.until_charging(plug_id)

    assert broker.terminate() == 0
    eventually(lambda: rows(outbox, "SELECT count(*) FROM outbox") >= 6, what="the outbox filling")
    relay.kill()  # kill -9: what it took during the outage is only on its disk
    with sqlite3.connect(outbox) as db:
        kept = [unpack(data, pb.ReadingChunk) for (data,) in db.execute("SELECT data FROM outbox")]
    procs.start("broker", "broker", "--port", str(port["broker"]), "--data-dir", "broker")
    procs.running[-1].wait_for_line("broker ready")
    relay_args = ["--config", str(site), "--port", str(port["relay"]), "--data-dir", "relay"]
    procs.start("relay", "relay", *relay_args).wait_for_line("relay ready")
    eventually(lambda: rows(outbox, "SELECT count(*) FROM outbox") == 0, what="the outbox sent")

    database = procs.workdir / "server" / "evplug.sqlite3"
    readings = {(r.plug_id, r.timestamp_ms) for chunk in kept for r in chunk.readings}

    def all_stored() -> bool:
        with sqlite3.connect(database) as db:
            return set(db.execute("SELECT plug_id, timestamp_ms FROM readings")) >= readings

    eventually(all_stored, what=f"the {len(kept)} chunks the killed relay kept, in the store")
    driver.press(plug_id, "Disable Socket")
    session, balance = driver.billed()
    assert session["energy_wh"] > 0 and balance == 2000 - session["cost_cents"]


def test_a_mothership_killed_mid_session_bills_the_session_once_after_its_restart(
    deployment: Deployment,
) -> None:
    procs, port, site, inbox = deployment
    start_all(procs, port, site)
    driver = credited_driver(procs, port["web"], inbox)
    plug_id = driver.idle_plug()
    driver.press(plug_id, "Enable Socket")
    driver.until_charging(plug_id)
    procs.running[2].kill()  # the mothership, kill -9 mid-session
    again = ["--port", str(port["mothership"]), "--site", str(site)]
    mothership = procs.start("mothership", "mothership", *again, env=credentials("mothership"))
    mothership.wait_for_line("mothership ready")
    driver.until_charging(plug_id)  # the session carried on by the restarted mothership
    driver.press(plug_id, "Disable Socket")
    session, balance = driver.billed()  # the same session, billed once
    assert session["energy_wh"] > 0 and balance == 2000 - session["cost_cents"]
