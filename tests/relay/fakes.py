"""Stand-ins for the mothership's side of the bus, for relay manager tests."""

from __future__ import annotations

from evplug.bus.base import Message
from evplug.bus.memory import MemoryBus
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack

SITE = "site-1"


async def collect(bus: MemoryBus, flow: str, message_type, durable: str) -> list:
    got: list = []

    async def handler(msg: Message) -> None:
        got.append(unpack(msg.data, message_type))
        await msg.ack()

    await bus.subscribe(subjects.all_sites(flow), durable, handler)
    return got


async def acking_mothership(bus: MemoryBus, ignore_first: int = 0) -> list:
    seen: list = []

    async def handler(msg: Message) -> None:
        announcement = unpack(msg.data, pb.DeviceAnnouncement)
        seen.append(announcement)
        await msg.ack()
        if len(seen) > ignore_first:
            ack = pb.DeviceAnnouncementAck(
                site_id=SITE,
                announcement_id=announcement.announcement_id,
                accepted_plug_ids=[d.plug_id for d in announcement.devices],
            )
            await bus.publish(subjects.for_site(subjects.ANNOUNCE_ACK, SITE), pack(ack))

    await bus.subscribe(subjects.all_sites(subjects.ANNOUNCE), "ms", handler)
    return seen
