"""A NATS bus on the test broker with nothing left over from an earlier test."""

from __future__ import annotations

import nats

from evplug.bus.nats import STREAMS, NatsBus, connect_nats, family_stream

# The contract suite's own subject families, beside evplug's.
TEST_STREAMS = (
    *STREAMS,
    family_stream("t", 10_000, 10 << 20, 3600.0),
    family_stream("other", 10_000, 10 << 20, 3600.0),
)


async def wipe(url: str) -> None:
    """Delete every stream (KV buckets are streams too), and with them every durable."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            await js.delete_stream(info.config.name)
    finally:
        await nc.close()


async def stored_messages(url: str) -> dict[str, int]:
    """How many messages each stream on the broker holds."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        return {
            info.config.name: info.state.messages for info in await nc.jetstream().streams_info()
        }
    finally:
        await nc.close()


async def fresh_nats_bus(url: str) -> NatsBus:
    await wipe(url)
    return await connect_nats(url, TEST_STREAMS)
