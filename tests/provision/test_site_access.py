"""A site's credentials on a real broker: what the broker itself lets them do, and their end."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import nats
import nats.errors
import pytest

from evplug.bus.base import BusRefused
from evplug.bus.broker import Broker, free_port, start_broker
from evplug.bus.nats import NatsBus, connect_nats
from evplug.contracts import subjects
from evplug.provision.authority import Authority
from evplug.provision.permissions import inbox_prefix
from evplug.provision.sites import BrokerAway, push_account
from evplug.provision.tokens import read_creds, write_secret
from tests.bus.inbox import Inbox
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def new_site() -> str:
    return f"site-{uuid.uuid4().hex[:8]}"


def issue(broker: Broker, directory: Path, site_id: str) -> Path:
    path = directory / f"{site_id}.creds"
    Authority(broker.data_dir).issue(site_id, site_id, partial(write_secret, path))
    return path


async def site_bus(broker: Broker, creds: Path) -> NatsBus:
    """A bus as a relay manager opens it: no stream administration."""
    return await connect_nats(broker.url, credentials=creds, declare_streams=False)


@pytest.fixture
async def admin(nats_broker: Broker) -> AsyncIterator[NatsBus]:
    """The broker's administrator, the streams declared."""
    bus = await connect_nats(nats_broker.url, credentials=nats_broker.credentials())
    yield bus
    await bus.close()


class Refusals:
    """A plain client on a site's credentials that records the broker's refusals."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def error_cb(self, error: Exception) -> None:
        self.errors.append(str(error))

    async def connect(self, broker: Broker, creds: Path) -> nats.NATS:
        _, key = read_creds(creds)
        return await nats.connect(
            broker.url,
            user_credentials=str(creds),
            inbox_prefix=inbox_prefix(key.public),
            error_cb=self.error_cb,
            allow_reconnect=False,
        )


def refused(operation: str, subject: str) -> str:
    """The broker's refusal as nats-py reports it (it lower-cases the broker's words)."""
    return f'nats: permissions violation for {operation} to "{subject.lower()}"'


async def test_a_site_may_not_publish_or_subscribe_beyond_its_own_subjects(
    nats_broker: Broker, tmp_path: Path, admin: NatsBus
) -> None:
    a, b = new_site(), new_site()
    creds = issue(nats_broker, tmp_path, a)
    forbidden_publish = [
        subjects.for_site(subjects.TELEMETRY, b),  # another site's readings
        subjects.for_site(subjects.RESPONSES, b),
        subjects.for_site(subjects.COMMANDS, a),  # a command to itself
        subjects.for_site(subjects.COMMANDS, b),
        subjects.for_site(subjects.DRIVER, a),
        subjects.BALANCE_CHANGED,
        f"$KV.{subjects.PLUG_STATUS_BUCKET}.{a}.x",  # the plugs' status
        "$JS.API.STREAM.DELETE.TELEMETRY",  # JetStream administration
        "$JS.API.STREAM.INFO.TELEMETRY",
        # Its own durable, bound to another site's commands.
        f"$JS.API.CONSUMER.CREATE.COMMANDS.{subjects.relay_durable(subjects.COMMANDS, a)}"
        f".commands.{b}",
        f"$JS.API.CONSUMER.MSG.NEXT.COMMANDS.{subjects.relay_durable(subjects.COMMANDS, b)}",
    ]
    forbidden_subscribe = [
        subjects.for_site(subjects.COMMANDS, b),
        subjects.for_site(subjects.TELEMETRY, b),
        subjects.all_sites(subjects.ANNOUNCE_ACK),
        "_INBOX.>",  # every other client's replies
        ">",
    ]
    watch = Refusals()
    nc = await watch.connect(nats_broker, creds)
    try:
        for subject in forbidden_publish:
            await nc.publish(subject, b"forged")
        for subject in forbidden_subscribe:
            await nc.subscribe(subject)
        await nc.flush()
        expected = [refused("publish", s) for s in forbidden_publish]
        expected += [refused("subscription", s) for s in forbidden_subscribe]
        await wait_for(lambda: len(watch.errors) >= len(expected), timeout_s=5)
        assert sorted(watch.errors) == sorted(expected)
        assert nc.is_connected  # refused, not cut off
    finally:
        await nc.close()


async def test_a_site_publishes_its_own_readings_and_takes_its_own_commands(
    nats_broker: Broker, tmp_path: Path, admin: NatsBus
) -> None:
    site = new_site()
    bus = await site_bus(nats_broker, issue(nats_broker, tmp_path, site))
    try:
        commands = Inbox()
        await bus.subscribe(
            subjects.for_site(subjects.COMMANDS, site),
            subjects.relay_durable(subjects.COMMANDS, site),
            commands,
        )
        for family in (subjects.TELEMETRY, subjects.RESPONSES, subjects.ANNOUNCE):
            assert await bus.publish(subjects.for_site(family, site), b"own", msg_id=family)
        await admin.publish(subjects.for_site(subjects.COMMANDS, site), b"on")
        await wait_for(lambda: commands.data == [b"on"], timeout_s=5)
    finally:
        await bus.close()


async def test_a_revoked_site_is_cut_off_at_once_and_refused_after_with_no_broker_restart(
    nats_broker: Broker, tmp_path: Path, admin: NatsBus
) -> None:
    a, b = new_site(), new_site()
    creds_a, creds_b = issue(nats_broker, tmp_path, a), issue(nats_broker, tmp_path, b)
    bus_a, bus_b = await site_bus(nats_broker, creds_a), await site_bus(nats_broker, creds_b)
    server = nats_broker.process.pid
    try:
        authority = Authority(nats_broker.data_dir)
        authority.revoke(a)
        await push_account(authority, nats_broker.url)
        reason = await wait_for_gone(bus_a)
        assert f"cut us off: the credentials in {creds_a}: user authentication revoked" in reason
        with pytest.raises(BusRefused, match=r"refused the credentials .* revoked"):
            await site_bus(nats_broker, creds_a)
        # The other site carries on; the broker is the same process.
        assert await bus_b.publish(subjects.for_site(subjects.TELEMETRY, b), b"still here")
        assert nats_broker.process.poll() is None and nats_broker.process.pid == server
        revoked = {site.site_id: site.revoked for site in authority.sites()}
        assert (revoked[a], revoked[b]) == (True, False)
    finally:
        await bus_a.close()
        await bus_b.close()


async def test_after_a_key_rotation_the_old_credentials_are_refused_and_the_new_work(
    nats_broker: Broker, tmp_path: Path, admin: NatsBus
) -> None:
    site = new_site()
    old = issue(nats_broker, tmp_path, site)
    bus = await site_bus(nats_broker, old)
    try:
        authority = Authority(nats_broker.data_dir)
        new = tmp_path / "new.creds"
        authority.rotate(site, partial(write_secret, new))
        await push_account(authority, nats_broker.url)
        await wait_for_gone(bus)
        with pytest.raises(BusRefused):
            await site_bus(nats_broker, old)
        rotated = await site_bus(nats_broker, new)
        try:
            assert await rotated.publish(subjects.for_site(subjects.TELEMETRY, site), b"r")
        finally:
            await rotated.close()
    finally:
        await bus.close()


async def test_credentials_of_another_operator_are_refused_naming_the_file(
    nats_broker: Broker, tmp_path: Path
) -> None:
    stranger = Authority(tmp_path / "elsewhere")
    stranger.ensure()
    path = tmp_path / "stranger.creds"
    stranger.issue("site-1", "site-1", partial(write_secret, path))
    with pytest.raises(BusRefused, match=rf"refused the credentials in {path} \(authorization"):
        await site_bus(nats_broker, path)


async def wait_for_gone(bus: NatsBus) -> str:
    await wait_for(bus.gone.done, timeout_s=5)
    return bus.gone.result()


async def test_a_revocation_made_while_the_broker_is_down_holds_when_it_starts(
    tmp_path: Path,
) -> None:
    broker = start_broker("127.0.0.1", free_port(), tmp_path / "nats")
    try:
        kept, revoked = new_site(), new_site()
        creds = {site: issue(broker, tmp_path, site) for site in (kept, revoked)}
        await (await site_bus(broker, creds[revoked])).close()  # works before
    finally:
        broker.stop()
    authority = Authority(broker.data_dir)
    authority.revoke(revoked)
    with pytest.raises(BrokerAway, match="the change is saved and takes effect when a broker"):
        await push_account(authority, broker.url, timeout_s=1)
    broker = start_broker("127.0.0.1", broker.port, broker.data_dir)
    try:
        with pytest.raises(BusRefused):
            await site_bus(broker, creds[revoked])
        await (await site_bus(broker, creds[kept])).close()
    finally:
        broker.stop()


@pytest.mark.parametrize(
    "filters",
    [
        {"filter_subject": "commands.{b}"},
        {"filter_subjects": ["commands.{b}"]},
        {"filter_subject": "commands.{a}", "filter_subjects": ["commands.{b}"]},
        {},  # every site's commands
    ],
)
async def test_a_site_s_own_consumer_api_subject_cannot_bind_another_site_s_commands(
    nats_broker: Broker, tmp_path: Path, admin: NatsBus, filters: dict[str, object]
) -> None:
    """The one consumer-create subject a site may use names its filter; the broker holds the
    request's configuration to it."""
    a, b = new_site(), new_site()
    creds = issue(nats_broker, tmp_path, a)
    durable = subjects.relay_durable(subjects.COMMANDS, a)
    config = json.loads(json.dumps(filters).replace("{a}", a).replace("{b}", b))
    request = {
        "stream_name": "COMMANDS",
        "config": {"name": durable, "durable_name": durable, "ack_policy": "explicit", **config},
    }
    nc = await Refusals().connect(nats_broker, creds)
    try:
        reply = await nc.request(
            f"$JS.API.CONSUMER.CREATE.COMMANDS.{durable}.commands.{a}",
            json.dumps(request).encode(),
            timeout=5,
        )
    finally:
        await nc.close()
    assert json.loads(reply.data)["error"]["code"] == 400
