"""The relay manager: polls every relay of a site, publishes its readings, executes commands.

At start-up it announces its devices and, in the background, retries until the mothership
acks; meanwhile it already polls. Every chunk goes to the outbox first; a sender sends what the
outbox holds, in order, once the site is announced and whenever the broker takes it. Devices
whose driver pushes (``PushDriver``) also have each change they report put in a chunk of its own
at once, between polls. Commands are answered with a LocalStateResponse after reading the relay
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

import structlog

from evplug import metrics
from evplug.bus.base import Bus, BusError, Message, Subscription
from evplug.clock import Clock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import (
    MAX_DEVICES_PER_ANNOUNCEMENT,
    MAX_READINGS_PER_CHUNK,
    WireError,
    pack,
    unpack,
)
from evplug.core.actual import ActualState
from evplug.core.edge_safety import StopReason
from evplug.devices.base import ChannelReading, DeviceError, DeviceInfo, Driver, PushDriver
from evplug.devices.health import DEFAULT_MIA_AFTER, Change, PollHealth
from evplug.relay.edge_guard import EdgeConfig, EdgeGuard
from evplug.relay.outbox import Outbox, Pending
from evplug.settings import RelaySettings

log = structlog.get_logger(__name__)
_DEFAULTS = RelaySettings()  # the settings hold each default once
# Chunks published before their acks are awaited: one round trip per window, not per chunk.
_SEND_WINDOW = 256
_MAX_RETRY_S = 10.0


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    driver: Driver
    fuze_id: str = ""  # "" = one circuit per device


@dataclass(slots=True)
class _Channel:
    driver: Driver
    info: DeviceInfo
    channel: int
    fuze_id: str


class AnnouncementNotAcked(RuntimeError):
    pass


class RelayManager:
    def __init__(
        self,
        site_id: str,
        bus: Bus,
        devices: list[DeviceSpec],
        clock: Clock,
        poll_interval_s: float = _DEFAULTS.poll_interval_s,
        mia_after_failed_polls: int = DEFAULT_MIA_AFTER,
        announce_timeout_s: float = 5.0,
        announce_attempts: int = 0,  # 0 = keep trying
        outbox: Outbox | None = None,  # None: in memory, gone with the process
        retry_s: float = 1.0,  # first pause after the bus refused a chunk; doubles to 10 s
        edge: EdgeConfig | None = None,  # None: the settings' defaults, no circuit limits
    ) -> None:
        self.site_id = site_id
        self.bus = bus
        self.devices = devices
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self.announce_timeout_s = announce_timeout_s
        self.announce_attempts = announce_attempts
        self.outbox = Outbox() if outbox is None else outbox
        self.retry_s = retry_s
        self.edge = EdgeGuard(edge or EdgeConfig(), clock, poll_interval_s)
        self.channels: dict[str, _Channel] = {}
        self._by_device: list[tuple[DeviceSpec, DeviceInfo]] = []
        self.health = PollHealth(mia_after_failed_polls)
        # Strictly increasing across restarts without a file: start from the clock.
        self._seq = clock.now_ms() * 1000
        self._acks: asyncio.Queue[pb.DeviceAnnouncementAck] = asyncio.Queue()
        self._subscriptions: list[Subscription] = []
        self._poller: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._pushed: asyncio.Queue[tuple[DeviceInfo, list[ChannelReading]]] = asyncio.Queue()
        self._publisher: asyncio.Task[None] | None = None
        self.announcing: asyncio.Task[None] | None = None
        self._announced = asyncio.Event()
        self._to_send = asyncio.Event()
        self._newest_command_ms: dict[str, int] = {}
        self.latest: dict[str, pb.Reading] = {}  # for the local status page
        self.polls = 0  # shown on the local status page
        self.pushes = 0  # chunks made from what a device reported by itself

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Identify every device: its plug ids come from the hardware."""
        if self._by_device:
            return
        for spec in self.devices:
            self._attach(spec, await spec.driver.connect())

    def _attach(self, spec: DeviceSpec, info: DeviceInfo) -> None:
        self._by_device.append((spec, info))
        for channel in range(info.channels):
            fuze = spec.fuze_id or f"{info.family}:{info.hardware_id}"
            self.channels[info.plug_id(channel)] = _Channel(spec.driver, info, channel, fuze)
        if self._publisher is not None:
            self._listen(spec.driver, info)

    def _listen(self, driver: Driver, info: DeviceInfo) -> None:
        if isinstance(driver, PushDriver):
            driver.subscribe(lambda readings: self._pushed.put_nowait((info, readings)))

    @property
    def addresses(self) -> set[str]:
        return {info.address for _, info in self._by_device}

    async def add_devices(self, specs: list[DeviceSpec]) -> list[str]:
        """Take on devices found while running; return the new plug ids (announced, if any).

        A device already known by its hardware id has moved to a new address: it keeps its
        plugs and circuit, and is read at the new address from now on.
        """
        new_plugs: list[str] = []
        for spec in specs:
            try:
                info = await spec.driver.connect()
            except DeviceError as exc:
                await spec.driver.close()
                log.warning(
                    "relay.found_device_unusable",
                    error=str(exc),
                    fix="give its address and credentials in the site config",
                )
                continue
            known = next(
                (
                    i
                    for i, (_, old) in enumerate(self._by_device)
                    if (old.family, old.hardware_id) == (info.family, info.hardware_id)
                ),
                None,
            )
            if known is None:
                self._attach(spec, info)
                new_plugs += [info.plug_id(c) for c in range(info.channels)]
                log.info("relay.device_added", device=info.hardware_id, address=info.address)
                continue
            old_spec, old_info = self._by_device.pop(known)
            await old_spec.driver.close()
            for channel in range(old_info.channels):
                self.channels.pop(old_info.plug_id(channel), None)
            self._attach(DeviceSpec(spec.driver, old_spec.fuze_id), info)
            log.info(
                "relay.device_moved",
                device=info.hardware_id,
                old=old_info.address,
                new=info.address,
            )
        if new_plugs and self._announced.is_set():
            await self.announce()
        return new_plugs

    async def start(self) -> None:
        await self.connect()
        # The durables' names are part of the site's credentials (evplug.provision).
        self._subscriptions.append(
            await self.bus.subscribe(
                subjects.for_site(subjects.ANNOUNCE_ACK, self.site_id),
                subjects.relay_durable(subjects.ANNOUNCE_ACK, self.site_id),
                self._on_announce_ack,
            )
        )
        self._subscriptions.append(
            await self.bus.subscribe(
                subjects.for_site(subjects.COMMANDS, self.site_id),
                subjects.relay_durable(subjects.COMMANDS, self.site_id),
                self._on_command,
            )
        )
        # Polling never waits for the handshake: readings wait in the outbox until it is done.
        self._poller = asyncio.create_task(self._poll_loop(), name=f"poll-{self.site_id}")
        self._sender = asyncio.create_task(self._send_loop(), name=f"send-{self.site_id}")
        self._publisher = asyncio.create_task(self._push_loop(), name=f"push-{self.site_id}")
        for spec, info in self._by_device:
            self._listen(spec.driver, info)
        self.announcing = asyncio.create_task(
            self._announce_site(), name=f"announce-{self.site_id}"
        )
        log.info("relay.started", site=self.site_id, plugs=len(self.channels))

    async def stop(self) -> None:
        """Stop polling and sending; what was not acked stays in the outbox for the next start."""
        for task in (self._poller, self._publisher, self._sender, self.announcing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, AnnouncementNotAcked):
                    await task
        for sub in self._subscriptions:
            await sub.stop()
        self._subscriptions = []
        for spec, _ in self._by_device:
            await spec.driver.close()
        self.outbox.close()

    # -- announcement ------------------------------------------------------------------------

    async def _announce_site(self) -> None:
        try:
            await self.announce()
        except AnnouncementNotAcked as exc:
            log.error("relay.not_announced", site=self.site_id, error=str(exc))
            raise

    async def announce(self) -> list[pb.DeviceAnnouncementAck]:
        """Announce every plug and wait for the acks, retrying until they come.

        A site with more plugs than one announcement may carry is announced in several, one
        after the other, each acked on its own.
        """
        devices = [
            pb.Device(
                plug_id=plug_id,
                fuze_id=ch.fuze_id,
                model=ch.info.model,
                address=ch.info.address,
                channel=ch.channel,
            )
            for plug_id, ch in self.channels.items()
        ]
        step = MAX_DEVICES_PER_ANNOUNCEMENT
        return [
            await self._announce(devices[start : start + step])
            for start in range(0, max(len(devices), 1), step)
        ]

    async def _announce(self, devices: list[pb.Device]) -> pb.DeviceAnnouncementAck:
        announcement = pb.DeviceAnnouncement(
            site_id=self.site_id,
            announcement_id=uuid.uuid4().hex,
            timestamp_ms=self.clock.now_ms(),
            devices=devices,
        )
        data = pack(announcement)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.bus.publish(
                    subjects.for_site(subjects.ANNOUNCE, self.site_id),
                    data,
                    msg_id=f"{announcement.announcement_id}:{attempt}",
                )
            except BusError as exc:  # the ack's wait below paces the next attempt
                log.warning("relay.announce_unsent", site=self.site_id, error=str(exc))
            with contextlib.suppress(TimeoutError):
                ack = await self._wait_for_ack(announcement.announcement_id)
                self.edge.heard()
                self._announced.set()
                if ack.rejected_plug_ids:
                    log.error(
                        "relay.plugs_rejected",
                        site=self.site_id,
                        plugs=list(ack.rejected_plug_ids),
                        reasons=dict(ack.rejected_reasons),
                        fix="is this site provisioned on the mothership, with these plugs?",
                    )
                return ack
            if self.announce_attempts and attempt >= self.announce_attempts:
                raise AnnouncementNotAcked(
                    f"no ack for the announcement of site {self.site_id} after {attempt} attempts:"
                    " is the mothership running and connected to the same bus?"
                )
            log.warning("relay.announce_retry", site=self.site_id, attempt=attempt)

    async def _wait_for_ack(self, announcement_id: str) -> pb.DeviceAnnouncementAck:
        timer = asyncio.ensure_future(self.clock.sleep(self.announce_timeout_s))
        try:
            while True:
                getter = asyncio.ensure_future(self._acks.get())
                done, _ = await asyncio.wait({getter, timer}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    raise TimeoutError
                ack = getter.result()
                if ack.announcement_id == announcement_id:
                    return ack
        finally:
            timer.cancel()

    async def _on_announce_ack(self, msg: Message) -> None:
        try:
            self._acks.put_nowait(unpack(msg.data, pb.DeviceAnnouncementAck))
        except WireError as exc:
            metrics.MESSAGES_REJECTED.labels("DeviceAnnouncementAck").inc()
            log.warning("relay.bad_announce_ack", error=str(exc))
        await msg.ack()

    # -- polling -----------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            started = self.clock.now_ms()
            try:
                self.edge.before_poll()
                await self.poll_once()
                await self.edge.after_poll(self)
            except Exception:
                log.exception("relay.poll_failed", site=self.site_id)
            spent_s = (self.clock.now_ms() - started) / 1000
            await self.clock.sleep(max(self.poll_interval_s - spent_s, 0.0))

    async def poll_once(self) -> list[pb.ReadingChunk]:
        """Read every relay once and publish the readings; return the chunks published.

        One chunk per poll, or several with their own seq when the readings are more than one
        chunk may carry.
        """
        devices = list(self._by_device)  # devices found meanwhile join the next poll
        results = await asyncio.gather(
            *(spec.driver.read() for spec, _ in devices), return_exceptions=True
        )
        now = self.clock.now_ms()
        chunks = [pb.ReadingChunk(site_id=self.site_id, seq=self._next_seq())]

        def add(**fields: object) -> pb.Reading:
            if len(chunks[-1].readings) == MAX_READINGS_PER_CHUNK:
                chunks.append(pb.ReadingChunk(site_id=self.site_id, seq=self._next_seq()))
            return chunks[-1].readings.add(**fields)

        for (_, info), result in zip(devices, results, strict=True):
            device = info.hardware_id
            if isinstance(result, BaseException):
                self._device_failed(info, result)
                if self.health.is_mia(device):
                    for channel in range(info.channels):
                        plug_id = info.plug_id(channel)
                        add(
                            plug_id=plug_id,
                            fuze_id=self.channels[plug_id].fuze_id,
                            actual_state=ActualState.MIA,
                            timestamp_ms=now,
                        )
                continue
            if self.health.succeeded(device) is Change.RECOVERED:
                log.info("relay.device_back", device=device)
            for r in result:
                self._measured(add(), info, r, now)
        self.polls += 1
        metrics.RELAY_POLLS.inc()
        self._send_chunks(chunks)
        return chunks

    def _measured(
        self, reading: pb.Reading, info: DeviceInfo, r: ChannelReading, now: int
    ) -> pb.Reading:
        plug_id = info.plug_id(r.channel)
        reading.plug_id = plug_id
        reading.fuze_id = self.channels[plug_id].fuze_id
        reading.actual_state = r.actual
        reading.current_a = r.current_a
        reading.voltage_v = r.voltage_v
        reading.power_factor = r.power_factor
        reading.timestamp_ms = now
        reading.active_power_w = r.power_w
        if r.energy_wh is not None:
            reading.energy_wh = r.energy_wh
        return reading

    async def _push_loop(self) -> None:
        """Send what devices report by themselves, in the order they report it."""
        while True:
            info, readings = await self._pushed.get()
            try:
                self.publish_pushed(info, readings)
            except Exception:
                log.exception("relay.push_failed", site=self.site_id, device=info.hardware_id)

    def publish_pushed(
        self, info: DeviceInfo, readings: list[ChannelReading]
    ) -> pb.ReadingChunk | None:
        """One chunk with the channels a device reported as changed, into the outbox; None for
        a device that is no longer the one at that address (it moved, or was replaced)."""
        known = self.channels.get(info.plug_id(0))
        if known is None or known.info is not info:
            log.info("relay.push_from_replaced_device", device=info.hardware_id, dropped=True)
            return None
        now = self.clock.now_ms()
        chunk = pb.ReadingChunk(site_id=self.site_id, seq=self._next_seq())
        for r in readings:
            self._measured(chunk.readings.add(), info, r, now)
        self.pushes += 1
        self._send_chunks([chunk])
        return chunk

    def publish_edge_stop(
        self, info: DeviceInfo, reading: ChannelReading, reason: StopReason
    ) -> pb.ReadingChunk:
        """The reading taken as this relay manager switched a socket off by itself, marked with
        why, into the outbox. Stamped after the poll's reading even in the same millisecond, so
        the mothership does not take it for a repeat."""
        plug_id = info.plug_id(reading.channel)
        now = max(self.clock.now_ms(), self.latest[plug_id].timestamp_ms + 1)
        chunk = pb.ReadingChunk(site_id=self.site_id, seq=self._next_seq())
        self._measured(chunk.readings.add(), info, reading, now).edge_stop = int(reason)
        self._send_chunks([chunk])
        return chunk

    def _device_failed(self, info: DeviceInfo, error: BaseException) -> None:
        change = self.health.failed(info.hardware_id, str(error))
        bug = not isinstance(error, DeviceError)
        metrics.RELAY_POLL_FAILURES.labels(kind="driver_bug" if bug else "read_error").inc()
        if change is Change.WENT_MIA:
            metrics.RELAY_POLL_FAILURES.labels(kind="went_mia").inc()
        if bug:
            log.error("relay.driver_bug", device=info.hardware_id, error=repr(error))
        elif change is Change.WENT_MIA:
            log.warning(
                "relay.device_mia", device=info.hardware_id, address=info.address, error=str(error)
            )

    # -- sending telemetry -------------------------------------------------------------------

    def _send_chunks(self, chunks: list[pb.ReadingChunk]) -> None:
        """On disk first, under the message id the broker dedupes by; the sender takes it on."""
        for chunk in chunks:
            for reading in chunk.readings:
                self.latest[reading.plug_id] = reading
        subject = subjects.for_site(subjects.TELEMETRY, self.site_id)
        self.outbox.put([(subject, f"{self.site_id}:{c.seq}", pack(c)) for c in chunks])
        self._to_send.set()

    async def send_pending(self) -> bool:
        """Send the outbox's chunks oldest first, a window of them in flight at once.

        A window's publishes all start before any ack is awaited, so they reach the broker in
        outbox order without a round trip each. A chunk is deleted once the broker acked it and
        every chunk before it. False when the bus refused one: it and every chunk after it stay,
        and are sent again in order under their own message ids (the broker drops the copies of
        those that had arrived).
        """
        while window := self.outbox.oldest(_SEND_WINDOW):
            results = await self._publish_window(window)
            failed = (n for n, result in enumerate(results) if isinstance(result, BaseException))
            acked = next(failed, len(window))
            self.outbox.remove(window[:acked])
            if acked < len(window):
                refused, error = window[acked], results[acked]
                if not isinstance(error, BusError):
                    raise error  # a bug, not the broker: as loud as before the window
                metrics.RELAY_PUBLISH_FAILURES.inc()
                log.warning(
                    "relay.publish_failed",
                    subject=refused.subject,
                    error=str(error),
                    waiting=len(self.outbox),
                )
                return False
        return True

    async def _publish_window(self, window: list[Pending]) -> list[bool | BaseException]:
        """Each chunk's ack, or what the bus raised for it, in window order."""
        if len(window) == 1:
            # Live, a window is one poll's chunk: sent from this task with no task to make, so
            # the live path keeps the timing it had before windows.
            pending = window[0]
            try:
                return [await self.bus.publish(pending.subject, pending.data, pending.msg_id)]
            except Exception as exc:
                return [exc]
        return await self.bus.publish_many([(p.subject, p.data, p.msg_id) for p in window])

    async def _send_loop(self) -> None:
        await self._announced.wait()
        pause_s = self.retry_s
        while True:
            self._to_send.clear()
            if await self.send_pending():
                pause_s = self.retry_s
                await self._to_send.wait()
            else:
                await self.clock.sleep(pause_s)
                pause_s = min(pause_s * 2, _MAX_RETRY_S)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _publish(self, subject: str, data: bytes, msg_id: str) -> None:
        try:
            await self.bus.publish(subject, data, msg_id=msg_id)
        except BusError as exc:
            metrics.RELAY_PUBLISH_FAILURES.inc()
            log.warning("relay.publish_failed", subject=subject, error=str(exc))
            raise

    # -- commands ----------------------------------------------------------------------------

    async def _on_command(self, msg: Message) -> None:
        try:
            request = unpack(msg.data, pb.LocalStateRequest)
        except WireError as exc:
            metrics.MESSAGES_REJECTED.labels("LocalStateRequest").inc()
            log.warning("relay.bad_command", error=str(exc))
            await msg.ack()
            return
        if request.issued_ms:
            self.edge.heard(at_ms=request.issued_ms)  # a command redelivered late is old news
        response = await self.execute(request)
        await self._publish(
            subjects.for_site(subjects.RESPONSES, self.site_id),
            pack(response),
            f"{request.request_id}:response",
        )
        await msg.ack()

    async def execute(self, request: pb.LocalStateRequest) -> pb.LocalStateResponse:
        received = time.perf_counter()  # real seconds, whatever the clock's speed
        response = pb.LocalStateResponse(request_id=request.request_id, plug_id=request.plug_id)
        channel = self.channels.get(request.plug_id)
        on = request.requested_state == pb.REQUESTED_STATE_ON
        newest = self._newest_command_ms.get(request.plug_id, 0)
        if channel is None or request.requested_state == pb.REQUESTED_STATE_UNKNOWN:
            response.ok = False
            response.error = f"no plug {request.plug_id!r} on site {self.site_id}, or no state"
        elif refused := self.edge.refusal(request.plug_id, on):
            response.ok = False
            response.error = refused
        elif request.issued_ms < newest:
            # A redelivered old command must not undo a newer one (an ON after the session's OFF).
            response.ok = False
            response.error = f"superseded: a command issued at {newest} ms was already carried out"
        else:
            self._newest_command_ms[request.plug_id] = request.issued_ms
            try:
                # Reads it back; ON arms the relay's own auto-off timer where it has one.
                actual = await self.edge.switch(
                    channel.driver, channel.channel, request.plug_id, on
                )
                metrics.RELAY_COMMAND_ROUND_TRIP.observe(time.perf_counter() - received)
                response.actual_state = actual
                response.ok = True
            except DeviceError as exc:
                response.ok = False
                response.error = f"{type(exc).__name__}: {exc}"
                log.warning("relay.switch_failed", plug_id=request.plug_id, error=response.error)
        response.timestamp_ms = self.clock.now_ms()
        return response
