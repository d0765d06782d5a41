"""The mothership's bus handlers: telemetry, relay answers and device announcements.

A message is acked only once what it caused is on disk: telemetry after its readings are
flushed and its effects applied, a relay's answer after its effects are applied. Telemetry never
waits for its effects: they go to the next batch, and its ack follows them. One whose effects
must wait stays unacked, so the bus delivers it again after its ack wait. A message that
can never be understood is acked at once, counted and logged: it would otherwise come back forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog
from google.protobuf.message import Message as ProtoMessage

from evplug import metrics
from evplug.bus.base import Bus, Message
from evplug.clock import Clock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import MAX_DEVICES_PER_ANNOUNCEMENT, WireError, pack, unpack
from evplug.core.ids import check_fuze_id, check_plug_id
from evplug.core.plug import Effect, Plug
from evplug.mothership.accounts import Accounts
from evplug.mothership.ingest import (
    ForeignChunk,
    actual_state,
    count_rejected_chunk,
    process_chunk,
)
from evplug.mothership.registry import PlugRegistry
from evplug.store.telemetry import ReadingSink

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=ProtoMessage)

# As the store keeps them (plugs.model); an address is a URL or a host.
MAX_MODEL_CHARS = 100
MAX_ADDRESS_CHARS = 200

# Each tells True when the message that caused the effects may be acked.
SubmitMany = Callable[[Sequence[Effect]], list[asyncio.Future[bool]]]
Apply = Callable[[Plug, list[Effect]], Awaitable[bool]]
Run = Callable[[Awaitable[None]], None]


class BusHandlers:
    def __init__(
        self,
        registry: PlugRegistry,
        sink: ReadingSink,
        bus: Bus,
        clock: Clock,
        apply: Apply,
        submit_many: SubmitMany,
        max_clock_ahead_ms: int,
        accounts: Accounts,
        run: Run,
    ) -> None:
        self.registry = registry
        self.sink = sink
        self.bus = bus
        self.clock = clock
        self.apply = apply
        self.submit_many = submit_many
        self.run = run
        self.max_clock_ahead_ms = max_clock_ahead_ms
        self.accounts = accounts
        self._warned: set[str] = set()

    async def on_telemetry(self, msg: Message) -> None:
        site_id = subjects.site_of(msg.subject)
        try:
            rows, effects = process_chunk(
                msg.data,
                site_id,
                self.registry.site_plugs,
                self._warned,
                not_after_ms=self.clock.now_ms() + self.max_clock_ahead_ms,
                current_a=self.registry.current_a,
                redelivered=msg.deliveries > 1,
            )
        except (WireError, ForeignChunk) as exc:
            count_rejected_chunk(exc)
            log.warning("ingest.rejected_chunk", site=site_id, error=str(exc))
            await msg.ack()
            return
        settled = self.submit_many(effects)
        self.accounts.readings(row[0] for row in rows)
        if not settled:  # the common case, readings alone: acked once they are written
            await self.sink.add(rows, msg.ack, key=msg.msg_id or None)
            return

        async def ack_once_settled() -> None:
            if all(f.done() for f in settled):
                await _ack_if_all(msg, settled)
            else:
                self.run(_ack_if_all(msg, settled))

        await self.sink.add(rows, ack_once_settled, key=msg.msg_id or None)

    async def on_response(self, msg: Message) -> None:
        site_id = subjects.site_of(msg.subject)
        response = await _decoded(msg, pb.LocalStateResponse, "response.rejected")
        if response is None:
            return
        plug = self.registry.site_plugs.get(site_id, {}).get(response.plug_id)
        if plug is None:
            log.warning("response.unknown_plug", site=site_id, plug_id=response.plug_id)
            await msg.ack()
            return
        if not response.ok:
            log.warning("relay.command_failed", plug_id=plug.plug_id, error=response.error)
        effects = plug.relay_response(
            response.request_id,
            actual_state(response.actual_state),
            response.ok,
            self.clock.now_ms(),
        )
        if await self.apply(plug, effects):
            await msg.ack()

    async def on_announce(self, msg: Message) -> None:
        site_id = subjects.site_of(msg.subject)
        announcement = await _decoded(msg, pb.DeviceAnnouncement, "announce.rejected")
        if announcement is None:
            return
        ack = pb.DeviceAnnouncementAck(
            site_id=site_id, announcement_id=announcement.announcement_id
        )
        problem = None
        if (
            announcement.site_id != site_id
            or await self.registry.repo.sites.get_site(site_id) is None
        ):
            problem = f"site {site_id!r} is not provisioned on this mothership"
        elif len(announcement.devices) > MAX_DEVICES_PER_ANNOUNCEMENT:
            problem = (
                f"{len(announcement.devices)} devices in one announcement: at most"
                f" {MAX_DEVICES_PER_ANNOUNCEMENT}, split it"
            )
        for device in announcement.devices:
            reason = problem or device_problem(device)
            if reason is None and not await self.registry.register(site_id, device):
                reason = "this plug id is registered to another site"
            if reason is None:
                ack.accepted_plug_ids.append(device.plug_id)
            else:
                ack.rejected_plug_ids.append(device.plug_id)
                ack.rejected_reasons[device.plug_id] = reason
        if ack.rejected_plug_ids:
            log.warning(
                "announce.rejected_plugs",
                site=site_id,
                rejected=len(ack.rejected_plug_ids),
                accepted=len(ack.accepted_plug_ids),
                first=next(iter(ack.rejected_reasons.values())),
            )
        await self.bus.publish(
            subjects.for_site(subjects.ANNOUNCE_ACK, site_id),
            pack(ack),
            msg_id=f"{site_id}:{announcement.announcement_id}:ack",
        )
        await msg.ack()

    async def on_balance_changed(self, msg: Message) -> None:
        """A driver's balance changed: their open sessions' credit limits follow it (with no
        session open, the next one starts from the new balance)."""
        change = await _decoded(msg, pb.BalanceChanged, "balance.rejected")
        if change is None:
            return
        await self.accounts.balance_changed(change.user_id)
        log.info("session.credit_changed", user_id=change.user_id, key=change.ledger_key)
        await msg.ack()


async def _ack_if_all(msg: Message, settled: list[asyncio.Future[bool]]) -> None:
    """Ack once every effect is applied; one that waits for retry keeps the message unacked, so
    it is redelivered (its readings are ignored as repeats, its effects are kept meanwhile)."""
    if all(await asyncio.gather(*settled)):
        await msg.ack()


async def _decoded(msg: Message, message_type: type[M], event: str) -> M | None:
    """The message's contents; a message that cannot be read is logged and acked (it would
    otherwise come back forever), and None returned."""
    try:
        return unpack(msg.data, message_type)
    except WireError as exc:
        metrics.MESSAGES_REJECTED.labels(message_type.DESCRIPTOR.name).inc()
        log.warning(event, subject=msg.subject, error=str(exc))
        await msg.ack()
        return None


def device_problem(device: pb.Device) -> str | None:
    """What is wrong with an announced device, in words a technician can act on; None if fine."""
    try:
        check_plug_id(device.plug_id)
        if device.fuze_id:
            check_fuze_id(device.fuze_id)
    except ValueError as exc:
        return str(exc)
    if len(device.model) > MAX_MODEL_CHARS or len(device.address) > MAX_ADDRESS_CHARS:
        return f"model or address too long: at most {MAX_MODEL_CHARS} / {MAX_ADDRESS_CHARS}"
    return None
