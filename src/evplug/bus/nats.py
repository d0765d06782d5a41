"""The bus on a NATS server: JetStream streams and KV, core NATS request/reply.

Every stream is declared once, in ``STREAMS``: one per subject family, as the memory bus keeps
them, so a flood of telemetry never pushes out a command. Streams keep messages up to their
limits (limits retention, oldest discarded first), not just until acked: interest retention
would drop what is published before a durable first subscribes, which the bus contract keeps.

A subscription is a durable pull consumer (explicit ack) with one pull request out at a time;
its messages reach the handler one by one, in order, as they arrive. An ack waits for the
broker's confirmation, so once it returns the message will not come back; acks asked for
together share one confirmation.

Every error from the client library leaves this module as ``BusError`` with the fix in words.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client, Server
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as CoreSubscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from evplug import metrics
from evplug.bus.base import (
    BusError,
    BusRefused,
    Handler,
    KvEntry,
    NoResponders,
    Outgoing,
    RequestTimeout,
    Responder,
    check_bucket,
    check_key,
    check_key_pattern,
    subject_matches,
)
from evplug.contracts import subjects
from evplug.provision.permissions import inbox_prefix
from evplug.provision.tokens import CredentialsError, read_creds

log = structlog.get_logger(__name__)

STOP_GRACE_S = 10.0
PULL_BATCH = 64  # messages asked for at once (fewer when max_ack_pending is lower)
PULL_EXPIRES_S = 5.0  # how long one pull request waits on the broker for messages
ACKED_REMEMBERED = 1024  # acked stream seqs a subscription keeps, to skip copies that crossed
STREAMS_REMEMBERED = 10_000  # subjects whose stream the bus remembers (a few per site)
RETRY_S = 1.0  # after a failed pull request
RECONNECT_FIRST_S = 0.25  # reconnect backoff: doubles per failed attempt up to RECONNECT_MAX_S
RECONNECT_MAX_S = 5.0
_MSG_ID = "Nats-Msg-Id"
# An ack subject without a domain: $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>....
_V1_TOKENS, _V1_DELIVERED, _V1_STREAM_SEQ = 9, 4, 5
_STATUS = "Status"
_HEARTBEAT = "100"
_REQUEST_OVER = ("404", "408")  # the pull request is over: no messages, or it expired

_KIB, _MIB, _GIB = 1 << 10, 1 << 20, 1 << 30
_HOUR, _DAY = 3600.0, 86400.0


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One JetStream stream: what it takes and how much of it the broker keeps."""

    name: str
    subjects: tuple[str, ...]
    max_msgs: int
    max_bytes: int
    max_age_s: float
    duplicate_window_s: float  # a message id repeated within this is a duplicate

    def takes(self, subject: str) -> bool:
        """Whether ``subject`` (a filter with wildcards, too) lies within this stream."""
        return any(subject_matches(pattern, subject) for pattern in self.subjects)

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            max_msgs=self.max_msgs,
            max_bytes=self.max_bytes,
            max_age=self.max_age_s,
            duplicate_window=self.duplicate_window_s,
        )


def family_stream(
    family: str,
    max_msgs: int,
    max_bytes: int,
    max_age_s: float,
    duplicate_window_s: float = 10 * 60,
) -> StreamSpec:
    """The stream of one subject family: every subject whose first token is ``family``."""
    return StreamSpec(
        family.upper(), (f"{family}.>",), max_msgs, max_bytes, max_age_s, duplicate_window_s
    )


# Every stream evplug uses. Request/reply (``driver.*``) and the KV buckets need none here.
STREAMS: tuple[StreamSpec, ...] = (
    # A site's outbox replays after an outage: ids stay deduped for an hour.
    family_stream(subjects.TELEMETRY, 5_000_000, 2 * _GIB, 7 * _DAY, duplicate_window_s=_HOUR),
    family_stream(subjects.COMMANDS, 100_000, 100 * _MIB, _DAY),
    family_stream(subjects.RESPONSES, 100_000, 100 * _MIB, _DAY),
    family_stream(subjects.ANNOUNCE, 10_000, 100 * _MIB, 7 * _DAY),
    family_stream(subjects.ANNOUNCE_ACK, 10_000, 100 * _MIB, 7 * _DAY),
    family_stream(subjects.BALANCE, 100_000, 100 * _MIB, 7 * _DAY),
)


@contextlib.contextmanager
def _broker_errors(doing: str) -> Iterator[None]:
    """Any client error while ``doing`` something, as a BusError that says what to check."""
    try:
        yield
    except nats.errors.Error as exc:
        raise _bus_error(doing, exc) from None


def _bus_error(doing: str, exc: nats.errors.Error) -> BusError:
    """A client error while ``doing`` something, as a BusError that says what to check."""
    if isinstance(exc, nats.errors.ConnectionClosedError):
        return BusError(f"{doing}: the bus connection is closed (the bus was closed)")
    if isinstance(exc, nats.errors.TimeoutError):
        return BusError(
            f"{doing}: the broker did not answer in time: is it running and not overloaded?"
        )
    return BusError(f"{doing}: {type(exc).__name__}: {exc}")


# -- streams -------------------------------------------------------------------------------


class NatsMessage:
    __slots__ = ("subject", "data", "msg_id", "deliveries", "_msg", "_pull", "_seq", "_done")

    def __init__(self, msg: Msg, pull: _Pull, seq: int, deliveries: int, msg_id: str) -> None:
        self.subject = msg.subject
        self.data = msg.data
        self.msg_id = msg_id
        self.deliveries = deliveries
        self._msg = msg
        self._pull = pull
        self._seq = seq  # in the stream
        self._done = False

    async def ack(self) -> None:
        if self._done:  # as on the memory bus, a second ack or nak does nothing
            return
        try:  # not _broker_errors: every message is acked, and this is cheaper
            await self._pull.ack(self._msg)
        except nats.errors.Error as exc:
            raise _bus_error(f"ack of {self.subject!r}", exc) from None
        self._done = True
        self._pull.acked(self._seq)

    async def nak(self) -> None:
        if self._done:
            return
        with _broker_errors(f"nak of {self.subject!r}"):
            await self._msg.nak()
        self._done = True


class _Pull:
    """One durable's deliveries: pull requests, one at a time, each message to the handler.

    A message that waits here past its ack wait (behind a slow handler) is redelivered by the
    broker into the same queue; a copy of one already acked is not handed over again.
    """

    def __init__(
        self,
        nc: Client,
        stream: str,
        durable: str,
        handler: Handler,
        batch: int,
        ack_timeout_s: float,
    ) -> None:
        self._nc = nc
        self._ack_timeout_s = ack_timeout_s
        # Acks asked for in this turn of the loop, each with its waiter (one per caller, so a
        # caller cancelled leaves the others' acks alone).
        self._acking: list[tuple[Msg, asyncio.Future[None]]] = []
        self._confirming: set[asyncio.Task[None]] = set()
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.durable = durable
        self._handler = handler
        self._batch = batch
        self._arrived: asyncio.Queue[Msg | None] = asyncio.Queue()  # None: ask again now
        self._acked: OrderedDict[int, None] = OrderedDict()  # stream seqs, the latest only
        self._inbox: CoreSubscription | None = None
        self._stopping = False
        self._busy = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._inbox = await self._nc.subscribe(self._nc.new_inbox(), cb=self._arrive)
        self._task = asyncio.create_task(self._run(), name=f"bus-pull-{self.durable}")

    async def _arrive(self, msg: Msg) -> None:
        self._arrived.put_nowait(msg)

    def ask_again(self) -> None:
        """After a reconnect: the open pull request died with the old connection."""
        self._arrived.put_nowait(None)

    async def _run(self) -> None:
        assert self._inbox is not None
        request = json.dumps({"batch": self._batch, "expires": int(PULL_EXPIRES_S * 1e9)}).encode()
        while not self._stopping:
            try:
                await self._nc.publish(self._next, request, reply=self._inbox.subject)
                await self._take(time.monotonic() + PULL_EXPIRES_S + 1.0)
            except nats.errors.ConnectionClosedError:
                return
            except nats.errors.Error as exc:
                log.warning("bus.pull_failed", durable=self.durable, error=repr(exc))
                await asyncio.sleep(RETRY_S)

    async def _take(self, deadline: float) -> None:
        """The messages of one pull request, until it is over (or has gone missing)."""
        received = 0
        arrived = self._arrived
        while received < self._batch and not self._stopping:
            if arrived.empty():
                try:
                    async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                        msg = await arrived.get()
                except TimeoutError:
                    return  # the end-of-request never came (a reconnect lost it): ask again
            else:  # the common case under load: no timer to set and cancel
                msg = arrived.get_nowait()
            if msg is None:
                return
            headers = msg.headers
            status = headers.get(_STATUS) if headers else None
            if status is None:
                received += 1
                await self._hand_over(msg, headers)
            elif status in _REQUEST_OVER:
                return
            elif status != _HEARTBEAT:
                # Asking again at once would only be refused again.
                log.warning("bus.pull_refused", durable=self.durable, reason=_refusal(msg))
                await asyncio.sleep(RETRY_S)
                return

    async def ack(self, msg: Msg) -> None:
        """Ack ``msg``; back once the broker confirmed it.

        The acks asked for together (a flushed batch's) are confirmed together: each is sent,
        and the broker's answer to the last one confirms them all, since it takes a
        connection's acks of a durable in order. One answer for the batch, not one per message.
        """
        if not self._acking:
            task = asyncio.create_task(self._confirm_acks())  # runs once this turn's acks are in
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)
        waiter = asyncio.get_running_loop().create_future()
        self._acking.append((msg, waiter))
        await waiter

    async def _confirm_acks(self) -> None:
        acking, self._acking = self._acking, []
        try:
            for msg, _ in acking[:-1]:
                await msg.ack()
            # The broker's answer can take a while behind a large batch: the API timeout.
            await acking[-1][0].ack_sync(self._ack_timeout_s)
        except asyncio.CancelledError:
            for _, waiter in acking:
                waiter.cancel()
            raise
        except Exception as exc:  # every waiter raises it, as its own ack's failure
            for _, waiter in acking:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for _, waiter in acking:
                if not waiter.done():  # its caller may have given up waiting
                    waiter.set_result(None)

    def acked(self, seq: int) -> None:
        self._acked[seq] = None
        if len(self._acked) > ACKED_REMEMBERED:
            self._acked.popitem(last=False)

    async def _hand_over(self, msg: Msg, headers: dict[str, str] | None) -> None:
        seq, deliveries = _delivery(msg)
        if seq in self._acked:
            return
        message = NatsMessage(
            msg, self, seq, deliveries, headers.get(_MSG_ID, "") if headers else ""
        )
        if deliveries > 1:
            metrics.BUS_REDELIVERIES.labels(durable=self.durable).inc()
        self._busy = True
        try:
            await self._handler(message)
        except Exception:
            # A failing handler must not stop the subscription; the message comes back later.
            log.exception("bus.handler_failed", durable=self.durable, subject=msg.subject)
        finally:
            self._busy = False

    async def stop(self) -> None:
        self._stopping = True
        task = self._task
        if task is not None:
            if not self._busy:  # waiting on the broker: no handler of its to let finish
                task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
            except TimeoutError:
                log.warning("bus.handler_cut_off", durable=self.durable)
                task.cancel()
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
        # Without interest in the inbox the broker drops the pull request still open.
        if self._inbox is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._inbox.unsubscribe()
        # What came but was never handed over goes back to the durable at once.
        while not self._arrived.empty():
            msg = self._arrived.get_nowait()
            if msg is not None and not (msg.headers or {}).get(_STATUS):
                with contextlib.suppress(nats.errors.Error):
                    await msg.nak()


def _delivery(msg: Msg) -> tuple[int, int]:
    """A JetStream message's sequence in its stream and how often it has been delivered.

    Read from its reply subject as the client library does, without the rest of its metadata
    (a timestamp, a dataclass or two): that took a few microseconds per message.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) == _V1_TOKENS and tokens[0] == Msg.Ack.Prefix0 and tokens[1] == Msg.Ack.Prefix1:
        return int(tokens[_V1_STREAM_SEQ]), int(tokens[_V1_DELIVERED])
    metadata = msg.metadata  # the longer form, with a domain: the library reads it
    return metadata.sequence.stream, metadata.num_delivered


def _refusal(msg: Msg) -> str:
    headers = msg.headers or {}
    if headers.get(_STATUS) == "503":
        return "no such durable on the broker (deleted?): restart the subscriber to recreate it"
    return f"{headers.get(_STATUS)} {headers.get('Description', '')}".strip()


class _PullSubscription:
    def __init__(self, pulls: set[_Pull], pull: _Pull) -> None:
        self._pulls = pulls
        self._pull = pull

    async def stop(self) -> None:
        self._pulls.discard(self._pull)
        await self._pull.stop()


# -- request/reply -------------------------------------------------------------------------


class _Served:
    def __init__(self, sub: CoreSubscription, pattern: str) -> None:
        self._sub = sub
        self._pattern = pattern

    async def stop(self) -> None:
        # A drain: the broker sends nothing new, the requests already here are answered.
        try:
            await asyncio.wait_for(self._sub.drain(), STOP_GRACE_S)
        except TimeoutError:
            log.warning("bus.responder_cut_off", serving=self._pattern)
        except nats.errors.Error as exc:
            log.warning("bus.responder_stop_failed", serving=self._pattern, error=repr(exc))


# -- key-value -----------------------------------------------------------------------------


class NatsKeyValue:
    def __init__(self, bucket: str, kv: KeyValue) -> None:
        self.bucket = bucket
        self._kv = kv

    async def put(self, key: str, value: bytes) -> int:
        if not isinstance(value, bytes):
            raise TypeError(f"value for {key!r} is {type(value).__name__}: encode it to bytes")
        check_key(key)
        with _broker_errors(f"put of {key!r} in bucket {self.bucket!r}"):
            return await self._kv.put(key, value)

    async def get(self, key: str) -> KvEntry | None:
        check_key(key)
        with _broker_errors(f"get of {key!r} in bucket {self.bucket!r}"):
            try:
                entry = await self._kv.get(key)
            except nats.js.errors.KeyNotFoundError:  # absent, or its latest is a delete marker
                return None
        return KvEntry(key, entry.value or b"", entry.revision or 0)

    async def delete(self, key: str) -> None:
        check_key(key)
        with _broker_errors(f"delete of {key!r} in bucket {self.bucket!r}"):
            await self._kv.delete(key)

    async def keys(self) -> list[str]:
        with _broker_errors(f"keys of bucket {self.bucket!r}"):
            try:
                return sorted(await self._kv.keys())
            except nats.js.errors.NoKeysError:
                return []

    async def watch(self, pattern: str = ">") -> NatsWatcher:
        check_key_pattern(pattern)
        with _broker_errors(f"watch of {pattern!r} in bucket {self.bucket!r}"):
            return NatsWatcher(await self._kv.watch(pattern))


class NatsWatcher:
    def __init__(self, watcher: KeyValue.KeyWatcher) -> None:
        self._watcher = watcher

    async def __aiter__(self) -> AsyncIterator[KvEntry]:
        current = True  # until the library's marker: the latest entry of each key
        async for update in self._watcher:
            if update is None:  # the marker that the current values are all delivered
                current = False
                continue
            deleted = update.operation in (KV_DEL, KV_PURGE)
            if deleted and current:  # a deleted key is not among the current values
                continue
            value = b"" if deleted else (update.value or b"")
            yield KvEntry(update.key, value, update.revision or 0, deleted)

    async def stop(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._watcher.stop()


# -- the bus -------------------------------------------------------------------------------


class NatsBus:
    """The ``Bus`` on a connected client; ``connect_nats`` makes one."""

    def __init__(
        self,
        nc: Client,
        events: _ConnectionLog,
        streams: tuple[StreamSpec, ...] = STREAMS,
        api_timeout_s: float = 5.0,
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=api_timeout_s)
        self._api_timeout_s = api_timeout_s
        self._events = events
        self.streams = streams
        self._pulls = events.pulls
        self._buckets: dict[str, NatsKeyValue] = {}
        # Each subject's stream, as found once: matching the table costs more than a publish.
        self._stream_of: dict[str, StreamSpec] = {}

    @property
    def gone(self) -> asyncio.Future[str]:
        """Done, with the reason, once the broker has closed this connection for good (the
        credentials were revoked): nothing reconnects after that."""
        return self._events.gone

    async def declare_streams(self) -> None:
        """Create each stream of the table, or bring an existing one to its declared limits."""
        for spec in self.streams:
            with _broker_errors(f"declaring stream {spec.name}"):
                try:
                    await self._js.add_stream(spec.config())
                except nats.js.errors.BadRequestError:  # exists with other limits
                    await self._js.update_stream(spec.config())

    def _stream(self, subject: str) -> StreamSpec:
        spec = self._stream_of.get(subject)
        if spec is not None:
            return spec
        for spec in self.streams:
            if spec.takes(subject):
                if len(self._stream_of) >= STREAMS_REMEMBERED:
                    self._stream_of.clear()
                self._stream_of[subject] = spec
                return spec
        raise BusError(
            f"no stream takes {subject!r}: add its subject family to STREAMS in evplug/bus/nats.py"
        )

    async def publish(self, subject: str, data: bytes, msg_id: str = "") -> bool:
        stream = self._stream(subject)
        headers = {_MSG_ID: msg_id} if msg_id else None
        with _broker_errors(f"publish on {subject!r}"):
            ack = await self._js.publish(subject, data, stream=stream.name, headers=headers)
        return _stored(stream, ack)

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[bool | BaseException]:
        """Every message sent before any answer is awaited; the answers share one API timeout."""
        answers = [await self._publish_async(*message) for message in messages]
        waiting = [answer for answer in answers if isinstance(answer, asyncio.Future)]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=self._api_timeout_s)
            for answer in late:
                answer.cancel()  # which frees its place among the client's pending publishes
        return [
            answer if isinstance(answer, BusError) else self._published(subject, answer)
            for (subject, _, _), answer in zip(messages, answers, strict=True)
        ]

    def _published(self, subject: str, answer: asyncio.Future[PubAck]) -> bool | BaseException:
        """What one publish of ``publish_many`` came to, once answered or given up on."""
        doing = f"publish on {subject!r}"
        if answer.cancelled():  # given up on after the API timeout
            return _bus_error(doing, nats.errors.TimeoutError())
        error = answer.exception()
        if isinstance(error, nats.errors.Error):
            return _bus_error(doing, error)
        return error or _stored(self._stream(subject), answer.result())

    async def _publish_async(
        self, subject: str, data: bytes, msg_id: str
    ) -> asyncio.Future[PubAck] | BusError:
        """The broker's answer to come, or why the message could not be sent.

        The client holds a place for each publish until its answer, and one whose sending
        fails keeps it for good: what the client would refuse is refused here first.
        """
        doing = f"publish on {subject!r}"
        try:
            stream = self._stream(subject)
        except BusError as exc:
            return exc
        if not self._nc.is_connected:
            return BusError(f"{doing}: not connected to the broker (reconnecting): sent later")
        if len(data) > self._nc.max_payload:
            return BusError(f"{doing}: {len(data)} bytes, over the broker's max_payload")
        headers = {_MSG_ID: msg_id} if msg_id else None
        try:
            # No wait_stall: its timer would make each publish a turn of the loop of its own,
            # and a write to the socket each. A window is far below the client's places.
            return await self._js.publish_async(subject, data, stream=stream.name, headers=headers)
        except nats.errors.Error as exc:
            return _bus_error(doing, exc)

    async def subscribe(
        self,
        subject: str,
        durable: str,
        handler: Handler,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1000,
    ) -> _PullSubscription:
        stream = self._stream(subject).name
        with _broker_errors(f"subscribing {durable!r} to {subject!r}"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                existing = await self._js.consumer_info(stream, durable)
                if existing.config.filter_subject != subject:
                    raise ValueError(
                        f"durable {durable!r} is bound to {existing.config.filter_subject!r},"
                        f" not {subject!r}"
                    )
            # Creates the durable, or updates its ack wait and limit to what is asked now.
            await self._js.add_consumer(
                stream,
                ConsumerConfig(
                    name=durable,
                    durable_name=durable,
                    filter_subject=subject,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=ack_wait_s,
                    max_ack_pending=max_ack_pending,
                ),
            )
            pull = _Pull(
                self._nc,
                stream,
                durable,
                handler,
                min(PULL_BATCH, max_ack_pending),
                self._api_timeout_s,
            )
            await pull.start()
        self._pulls.add(pull)
        return _PullSubscription(self._pulls, pull)

    async def request(self, subject: str, data: bytes, timeout_s: float = 5.0) -> bytes:
        try:
            reply = await self._nc.request(subject, data, timeout=timeout_s)
        except nats.errors.NoRespondersError:
            raise NoResponders(f"nobody serves {subject!r}: start its responder first") from None
        except nats.errors.TimeoutError:
            raise RequestTimeout(
                f"no reply on {subject!r} within {timeout_s} s: "
                "look for bus.responder_failed in the log, or allow a longer timeout"
            ) from None
        except nats.errors.Error as exc:
            raise BusError(f"request on {subject!r}: {type(exc).__name__}: {exc}") from None
        return reply.data

    async def serve(self, subject: str, responder: Responder, queue: str = "") -> _Served:
        async def answer(msg: Msg) -> None:
            try:
                reply = await responder(msg.subject, msg.data)
                if not isinstance(reply, bytes):
                    raise TypeError(f"the reply is {type(reply).__name__}: return bytes")
            except Exception:
                # As the memory bus: the requester gets no reply and times out; serving goes on.
                log.exception("bus.responder_failed", subject=msg.subject, serving=subject)
                return
            if msg.reply:
                try:
                    await msg.respond(reply)
                except nats.errors.Error as exc:
                    log.warning("bus.reply_failed", subject=msg.subject, error=repr(exc))

        with _broker_errors(f"serving {subject!r}"):
            sub = await self._nc.subscribe(subject, queue=queue, cb=answer)
            await self._nc.flush()  # the broker knows of this server before serve returns
        return _Served(sub, subject)

    async def key_value(self, bucket: str) -> NatsKeyValue:
        kv = self._buckets.get(check_bucket(bucket))
        if kv is None:
            with _broker_errors(f"opening bucket {bucket!r}"):
                try:
                    found = await self._js.key_value(bucket)
                except nats.js.errors.BucketNotFoundError:
                    found = await self._js.create_key_value(
                        KeyValueConfig(bucket=bucket, history=1)
                    )
            kv = self._buckets[bucket] = NatsKeyValue(bucket, found)
        return kv

    async def close(self) -> None:
        for pull in list(self._pulls):
            await pull.stop()
        self._pulls.clear()
        self._events.closing = True
        # Not a drain: with a pull request open a drain can hang for its whole expiry. A broker
        # that is already gone has nothing left to flush: closing is still done.
        with contextlib.suppress(OSError, nats.errors.Error):
            await self._nc.close()


def _stored(stream: StreamSpec, ack: PubAck) -> bool:
    """True when the broker stored the message, False when it dropped it as a duplicate."""
    if ack.duplicate:
        metrics.BUS_DUPLICATES.labels(stream=stream.name).inc()
        return False
    return True


def _reconnect_after(servers: list[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
    """Back off between reconnect attempts: 0.25 s, 0.5 s, 1 s... up to 5 s."""
    attempts = max((server.reconnects for server in servers), default=0)
    return None, min(RECONNECT_FIRST_S * 2**attempts, RECONNECT_MAX_S)


class _ConnectionLog:
    """The client's connection events, logged; nothing to report when the bus closes it."""

    def __init__(self, url: str, credentials: Path | None) -> None:
        self.url = url
        self.credentials = credentials
        self.closing = False
        self.pulls: set[_Pull] = set()  # told when the connection is back
        self.client: Client | None = None
        self.gone: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def _refused(self, error: BaseException | None) -> bool:
        """Whether ``error`` is the broker refusing the credentials for good; if so, says so."""
        if self.gone.done():
            return True
        text = str(error or "").removeprefix("nats: ").strip("'").lower()
        whose = f"the credentials in {self.credentials}" if self.credentials else "no credentials"
        fix = "ask the operator for new ones (`evplug site rotate-key SITE`)"
        if isinstance(error, nats.errors.AuthorizationError) or "authorization" in text:
            cause = (
                f"the broker at {self.url} refused {whose} (authorization violation): they are"
                f" not this broker's, or were revoked or rotated: {fix}"
            )
        elif "revoked" in text or "expired" in text:
            cause = f"the broker at {self.url} cut us off: {whose}: {text}: {fix}"
        else:
            return False
        self.gone.set_result(cause)
        return True

    async def error(self, error: Exception) -> None:
        if not self._refused(error):  # a refusal is the caller's to report, in one line
            log.warning("bus.broker_error", url=self.url, error=repr(error))

    async def disconnected(self) -> None:
        if not self.closing and not self.gone.done():
            log.warning("bus.disconnected", url=self.url)

    async def closed(self) -> None:
        if not self.closing and self.client is not None:
            self._refused(self.client.last_error)

    async def reconnected(self) -> None:
        log.info("bus.reconnected", url=self.url)
        for pull in self.pulls:
            pull.ask_again()


def _unreachable(url: str) -> BusError:
    return BusError(f"broker unreachable at {url}: is `evplug broker` running?")


async def connect_nats(
    url: str,
    streams: tuple[StreamSpec, ...] = STREAMS,
    connect_timeout_s: float = 5.0,
    api_timeout_s: float = 5.0,
    credentials: Path | None = None,
    declare_streams: bool = True,
) -> NatsBus:
    """A bus on the broker at ``url``, its streams declared; fails at once if nothing listens.

    Once connected, a lost connection is retried for ever, with backoff. ``api_timeout_s`` is
    how long a publish, an ack or a stream/KV call waits for the broker's answer.
    ``credentials`` is a NATS credentials file; its user's replies come to its own inboxes, as
    its permissions say. Only a user allowed to administer JetStream can ``declare_streams``; a
    broker that refuses the credentials is a ``BusRefused``.
    """
    options: dict[str, Any] = {}
    if credentials is not None:
        try:
            _, key = read_creds(credentials)
        except CredentialsError as exc:
            raise BusRefused(str(exc)) from None
        options = {"user_credentials": str(credentials), "inbox_prefix": inbox_prefix(key.public)}
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    # The client would retry a refused first connect for ever: ask the socket first.
    try:
        async with asyncio.timeout(connect_timeout_s):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
    except (OSError, TimeoutError):
        raise _unreachable(url) from None
    events = _ConnectionLog(url, credentials)
    nc = events.client = Client()
    connecting = asyncio.ensure_future(
        nc.connect(
            url,
            name="evplug",
            connect_timeout=max(1, round(connect_timeout_s)),
            max_reconnect_attempts=-1,
            reconnect_to_server_handler=_reconnect_after,
            error_cb=events.error,
            disconnected_cb=events.disconnected,
            closed_cb=events.closed,
            reconnected_cb=events.reconnected,
            **options,
        )
    )
    # A refusal of the credentials ends the wait at once: the client would retry it for ever.
    await asyncio.wait(
        {connecting, events.gone}, timeout=connect_timeout_s, return_when="FIRST_COMPLETED"
    )
    if not connecting.done() or connecting.exception() is not None:
        connecting.cancel()
        events.closing = True
        with contextlib.suppress(OSError, nats.errors.Error, asyncio.CancelledError):
            await nc.close()
        if events.gone.done():
            raise BusRefused(events.gone.result())
        raise _unreachable(url)
    bus = NatsBus(nc, events, streams, api_timeout_s)
    if declare_streams:
        try:
            await bus.declare_streams()
        except BaseException:
            await nc.close()
            raise
    return bus
