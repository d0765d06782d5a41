"""The embedded bus: one process, the same ack and redelivery semantics as JetStream.

One stream per subject family (the first token: ``telemetry``, ``commands``...), so a flood of
one never pushes out another. A message leaves its stream once every consumer it is for has
acked it; past the stream's limit the oldest are dropped, counted and logged, as a JetStream
stream with a message limit would. Each durable consumer keeps its own cursor and its unacked
deliveries, so a subscriber that stops and comes back (a restarted mothership) gets what it
had not acked.

Request/reply and key-value buckets live in the same process: a request reaches its servers
through an in-memory queue each, and times out on the bus's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from evplug import metrics
from evplug.bus.base import (
    Handler,
    NoResponders,
    Outgoing,
    RequestTimeout,
    Responder,
    check_bucket,
    subject_matches,
)
from evplug.bus.memory_kv import MemoryKeyValue
from evplug.clock import Clock, SystemClock

log = structlog.get_logger(__name__)

STOP_GRACE_S = 10.0


@dataclass(eq=False)
class _Stream:
    name: str
    log: deque[_Stored] = field(default_factory=deque)
    seq: int = 0  # of the newest message
    consumers: list[_Consumer] = field(default_factory=list)

    def find(self, seq: int) -> _Stored | None:
        if not self.log or seq < self.log[0].seq:
            return None
        index = seq - self.log[0].seq
        return self.log[index] if index < len(self.log) else None

    def trim(self) -> None:
        """Forget messages at the head that every consumer they match has acked."""
        while self.log:
            head = self.log[0]
            matching = [c for c in self.consumers if subject_matches(c.pattern, head.subject)]
            if not matching or any(c.cursor < head.seq or head.seq in c.pending for c in matching):
                return  # kept for a consumer to come, or not yet acked
            self.log.popleft()


@dataclass(slots=True)
class _Stored:
    seq: int
    subject: str
    data: bytes
    msg_id: str


@dataclass(slots=True, eq=False)
class MemoryMessage:
    subject: str
    data: bytes
    msg_id: str
    deliveries: int
    _consumer: _Consumer
    _seq: int

    async def ack(self) -> None:
        self._consumer.acked(self._seq)

    async def nak(self) -> None:
        self._consumer.nakked(self._seq)


@dataclass(eq=False)
class _Consumer:
    bus: MemoryBus
    stream: _Stream
    pattern: str
    durable: str
    ack_wait_ms: int = 30_000
    max_ack_pending: int = 1000
    cursor: int = 0  # last seq looked at
    # seq -> (redeliver at ms, deliveries so far)
    pending: OrderedDict[int, tuple[int, int]] = field(default_factory=OrderedDict)
    redeliver_now: deque[int] = field(default_factory=deque)
    handler: Handler | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def acked(self, seq: int) -> None:
        if self.pending.pop(seq, None) is not None:
            self.stream.trim()
            self.wake.set()

    def nakked(self, seq: int) -> None:
        if seq in self.pending:
            self.redeliver_now.append(seq)
            self.wake.set()


class _MemorySubscription:
    def __init__(self, consumer: _Consumer, tasks: list[asyncio.Task[None]]) -> None:
        self._consumer = consumer
        self._tasks = tasks

    async def stop(self) -> None:
        deliver, *others = self._tasks
        for task in others:
            task.cancel()
        # Let the handler in progress finish: cut off mid-way it could leave a write half done.
        self._consumer.handler = None
        self._consumer.wake.set()
        try:
            await asyncio.wait_for(deliver, STOP_GRACE_S)
        except TimeoutError:
            log.warning("bus.handler_cut_off", durable=self._consumer.durable)
        for task in others:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # What was delivered but not acked goes to the next subscriber straight away.
        self._consumer.redeliver_now.extend(self._consumer.pending)


_Request = tuple[str, bytes, asyncio.Future[bytes]]  # subject, data, where the reply goes


class _Server:
    """One ``serve``: answers its requests one at a time, in order, as a NATS subscription does."""

    def __init__(
        self, servers: list[_Server], pattern: str, queue: str, responder: Responder
    ) -> None:
        self._servers = servers
        self.pattern = pattern
        self.queue = queue
        self._responder = responder
        self._inbox: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._answer(), name=f"bus-serve-{pattern}")

    def take(self, request: _Request) -> None:
        self._inbox.put_nowait(request)

    async def _answer(self) -> None:
        while (request := await self._inbox.get()) is not None:
            subject, data, reply = request
            try:
                answer = await self._responder(subject, data)
                if not isinstance(answer, bytes):
                    raise TypeError(f"the reply is {type(answer).__name__}: return bytes")
            except Exception:
                # As in NATS the requester gets no reply and times out; this server goes on.
                log.exception("bus.responder_failed", subject=subject, serving=self.pattern)
                continue
            if not reply.done():  # else the requester has given up or another server answered
                reply.set_result(answer)

    async def stop(self) -> None:
        if self in self._servers:
            self._servers.remove(self)
        self._inbox.put_nowait(None)  # after the requests already taken: they get answered
        try:
            await asyncio.wait_for(self._task, STOP_GRACE_S)
        except TimeoutError:
            log.warning("bus.responder_cut_off", serving=self.pattern)


class MemoryBus:
    def __init__(
        self,
        clock: Clock | None = None,
        max_messages: int = 100_000,  # per stream
        dedupe_window: int = 100_000,
    ) -> None:
        self.clock = clock or SystemClock()
        self.max_messages = max_messages
        self._streams: dict[str, _Stream] = {}
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._dedupe_window = dedupe_window
        self._consumers: dict[str, _Consumer] = {}
        self._servers: list[_Server] = []
        self._turns = itertools.count()  # round robin within a queue group
        self._buckets: dict[str, MemoryKeyValue] = {}

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[bool | BaseException]:
        # In turn: a publish here waits for nothing, so a task each would only cost.
        results: list[bool | BaseException] = []
        for subject, data, msg_id in messages:
            try:
                results.append(await self.publish(subject, data, msg_id))
            except Exception as exc:
                results.append(exc)
        return results

    async def publish(self, subject: str, data: bytes, msg_id: str = "") -> bool:
        stream = self._stream(subject)
        if msg_id:
            if msg_id in self._ids:
                metrics.BUS_DUPLICATES.labels(stream=stream.name).inc()
                return False
            self._ids[msg_id] = None
            if len(self._ids) > self._dedupe_window:
                self._ids.popitem(last=False)
        stream.seq += 1
        stream.log.append(_Stored(stream.seq, subject, data, msg_id))
        if len(stream.log) > self.max_messages:
            lost = stream.log.popleft()
            metrics.BUS_DROPPED.labels(stream=stream.name).inc()
            log.warning("bus.dropped_oldest", subject=lost.subject, seq=lost.seq)
        for consumer in stream.consumers:
            consumer.wake.set()
        return True

    def _stream(self, subject: str) -> _Stream:
        name = subject.split(".", 1)[0]
        if name in ("*", ">") or not name:
            raise ValueError(f"{subject!r}: the first token names the stream and must be literal")
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream(name)
        return stream

    def retained(self, stream: str) -> int:
        """Messages a stream still holds (not yet acked by everyone they are for)."""
        return len(self._streams[stream].log) if stream in self._streams else 0

    async def subscribe(
        self,
        subject: str,
        durable: str,
        handler: Handler,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1000,
    ) -> _MemorySubscription:
        consumer = self._consumers.get(durable)
        if consumer is None:
            stream = self._stream(subject)
            consumer = _Consumer(self, stream, subject, durable)
            self._consumers[durable] = consumer
            stream.consumers.append(consumer)
        elif consumer.pattern != subject:
            raise ValueError(
                f"durable {durable!r} is bound to {consumer.pattern!r}, not {subject!r}"
            )
        if consumer.handler is not None:
            raise ValueError(f"durable {durable!r} already has a subscriber")
        consumer.ack_wait_ms = int(ack_wait_s * 1000)
        consumer.max_ack_pending = max_ack_pending
        consumer.handler = handler
        consumer.wake.set()
        tasks = [
            asyncio.create_task(self._deliver(consumer), name=f"bus-deliver-{durable}"),
            asyncio.create_task(self._redeliver_expired(consumer), name=f"bus-expire-{durable}"),
        ]
        return _MemorySubscription(consumer, tasks)

    async def _deliver(self, consumer: _Consumer) -> None:
        while consumer.handler is not None:
            await consumer.wake.wait()
            consumer.wake.clear()
            while consumer.redeliver_now and consumer.handler is not None:
                seq = consumer.redeliver_now.popleft()
                if seq in consumer.pending:
                    await self._hand_over(consumer, seq)
            while (
                consumer.handler is not None
                and len(consumer.pending) < consumer.max_ack_pending
                and consumer.cursor < consumer.stream.seq
            ):
                consumer.cursor += 1
                stored = consumer.stream.find(consumer.cursor)
                if stored is not None and subject_matches(consumer.pattern, stored.subject):
                    await self._hand_over(consumer, stored.seq)

    async def _hand_over(self, consumer: _Consumer, seq: int) -> None:
        stored = consumer.stream.find(seq)
        if stored is None:  # trimmed from the log while waiting: already counted as dropped
            consumer.pending.pop(seq, None)
            return
        _, deliveries = consumer.pending.get(seq, (0, 0))
        consumer.pending[seq] = (self.clock.now_ms() + consumer.ack_wait_ms, deliveries + 1)
        message = MemoryMessage(
            stored.subject, stored.data, stored.msg_id, deliveries + 1, consumer, seq
        )
        handler = consumer.handler
        if handler is None:  # stopping: it stays pending for the next subscriber
            return
        if deliveries:
            metrics.BUS_REDELIVERIES.labels(durable=consumer.durable).inc()
        try:
            await handler(message)
        except Exception:
            # A failing handler must not stop the subscription; the message comes back later.
            log.exception("bus.handler_failed", durable=consumer.durable, subject=stored.subject)

    async def _redeliver_expired(self, consumer: _Consumer) -> None:
        while True:
            await self.clock.sleep(max(consumer.ack_wait_ms / 4000, 0.001))
            now = self.clock.now_ms()
            due = [seq for seq, (deadline, _) in consumer.pending.items() if deadline <= now]
            for seq in due:
                # Push the deadline on so the next pass does not queue it a second time.
                consumer.pending[seq] = (now + consumer.ack_wait_ms, consumer.pending[seq][1])
                consumer.redeliver_now.append(seq)
            if due:
                consumer.wake.set()

    def pending_count(self, durable: str) -> int:
        consumer = self._consumers.get(durable)
        return len(consumer.pending) if consumer else 0

    async def serve(self, subject: str, responder: Responder, queue: str = "") -> _Server:
        server = _Server(self._servers, subject, queue, responder)
        self._servers.append(server)
        return server

    async def request(self, subject: str, data: bytes, timeout_s: float = 5.0) -> bytes:
        servers = self._servers_for(subject)
        if not servers:
            raise NoResponders(f"nobody serves {subject!r}: start its responder first")
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        for server in servers:
            server.take((subject, data, reply))
        timer = asyncio.create_task(self.clock.sleep(timeout_s))
        try:
            await asyncio.wait((reply, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            reply.cancel()  # once answered this does nothing; else a late answer goes nowhere
        if reply.cancelled():
            raise RequestTimeout(
                f"no reply on {subject!r} within {timeout_s} s: "
                "look for bus.responder_failed in the log, or allow a longer timeout"
            )
        return reply.result()

    def _servers_for(self, subject: str) -> list[_Server]:
        """Every server without a queue group, and one member of each queue group."""
        chosen: list[_Server] = []
        groups: dict[str, list[_Server]] = {}
        for server in self._servers:
            if subject_matches(server.pattern, subject):
                if server.queue:
                    groups.setdefault(server.queue, []).append(server)
                else:
                    chosen.append(server)
        chosen += [members[next(self._turns) % len(members)] for members in groups.values()]
        return chosen

    async def key_value(self, bucket: str) -> MemoryKeyValue:
        kv = self._buckets.get(check_bucket(bucket))
        if kv is None:
            kv = self._buckets[bucket] = MemoryKeyValue(bucket)
        return kv

    async def close(self) -> None:
        return None
