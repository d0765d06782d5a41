"""A NATS bus on the test broker with nothing left over from an earlier test."""

from __future__ import annotations

import nats

from evplug.bus.broker import Broker
from evplug.bus.nats import STREAMS, NatsBus, connect_nats, family_stream

# The contract suite's own subject families, beside evplug's.
TEST_STREAMS = (
    *STREAMS,
    family_stream("t", 10_000, 10 << 20, 3600.0),
    family_stream("other", 10_000, 10 << 20, 3600.0),
)


async def wipe(broker: Broker) -> None:
    """Delete every stream (KV buckets are streams too), and with them every durable."""
    nc = await admin_client(broker)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            await js.delete_stream(info.config.name)
    finally:
        await nc.close()


async def stored_messages(broker: Broker) -> dict[str, int]:
    """How many messages each stream on the broker holds."""
    nc = await admin_client(broker)
    try:
        return {
            info.config.name: info.state.messages for info in await nc.jetstream().streams_info()
        }
    finally:
        await nc.close()


async def admin_client(broker: Broker) -> nats.NATS:
    """A plain client of the broker's administrator (it may do anything in the account)."""
    return await nats.connect(
        broker.url, allow_reconnect=False, user_credentials=str(broker.credentials())
    )


async def fresh_nats_bus(broker: Broker) -> NatsBus:
    await wipe(broker)
    return await connect_nats(broker.url, TEST_STREAMS, credentials=broker.credentials())
