"""The mothership's real parts (SQLite store, memory bus) on a fake clock, with a fake site.

Nothing runs in the background: a test feeds readings and relay answers through the bus
handlers, awaits each, and moves time with ``advance`` (which runs one tick per second), so every
step is deterministic and no test sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evplug.bus.base import Message
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.core import ledger
from evplug.core.plug import Prompt
from evplug.mothership.registry import circuit_key
from evplug.mothership.runtime import Mothership, MothershipConfig
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink

SITE = "site-1"
FUZE = "main"
CREDIT_CENTS = 5_000


@dataclass(eq=False)
class FakeMessage:
    subject: str
    data: bytes
    msg_id: str = ""
    deliveries: int = 1
    acked: bool = False

    async def ack(self) -> None:
        self.acked = True

    async def nak(self) -> None:
        return None


@dataclass
class Socket:
    """One relay channel as the fake site sees it: its switch and its energy counter."""

    on: bool = False
    power_w: float = 0.0  # what the car draws while the relay is on
    counter_wh: float = 0.0
    tripped: bool = False  # its overpower protection opened it; switching on clears it

    @property
    def actual(self) -> int:
        if self.tripped:
            return pb.ACTUAL_STATE_OVERCURRENT
        return pb.ACTUAL_STATE_ON if self.on else pb.ACTUAL_STATE_OFF


@dataclass
class Site:
    ms: Mothership
    clock: FakeClock
    repo: Repository
    bus: MemoryBus
    plug_ids: list[str]
    sockets: dict[str, Socket] = field(default_factory=dict)
    commands: list[pb.LocalStateRequest] = field(default_factory=list)
    answered: int = 0

    async def read(self, seconds: float = 2.0) -> FakeMessage:
        """The relay manager's poll: every socket's reading, after ``seconds`` of charging."""
        message = await self.chunk(seconds)
        await self.ms.handlers.on_telemetry(message)
        await self.ms.pending.idle()  # its effects, applied in the background, before looking
        await self.ms.sink.flush()
        return message

    async def chunk(self, seconds: float = 2.0) -> FakeMessage:
        """The poll's chunk, not yet handled: every socket after ``seconds`` of charging."""
        now = self.clock.now_ms()
        chunk = pb.ReadingChunk(site_id=SITE, seq=now)
        for plug_id in self.plug_ids:
            socket = self.sockets[plug_id]
            power = socket.power_w if socket.on else 0.0
            socket.counter_wh += power * seconds / 3600
            chunk.readings.add(
                plug_id=plug_id,
                timestamp_ms=now,
                actual_state=socket.actual,
                active_power_w=power,
                energy_wh=socket.counter_wh,
            )
        return FakeMessage(subjects.for_site(subjects.TELEMETRY, SITE), pack(chunk), str(now))

    async def answer(self) -> list[pb.LocalStateRequest]:
        """Carry out the commands sent since the last call, and answer each."""
        await settle()
        new = self.commands[self.answered :]
        self.answered = len(self.commands)
        for request in new:
            await self.ms.handlers.on_response(self.carry_out(request))
        return new

    def carry_out(self, request: pb.LocalStateRequest) -> FakeMessage:
        """Switch the socket as ``request`` asks: the relay's answer, not yet handled."""
        socket = self.sockets[request.plug_id]
        socket.on = request.requested_state == pb.REQUESTED_STATE_ON
        socket.tripped = socket.tripped and not socket.on
        response = pb.LocalStateResponse(
            request_id=request.request_id,
            plug_id=request.plug_id,
            actual_state=socket.actual,
            ok=True,
            timestamp_ms=self.clock.now_ms(),
        )
        return FakeMessage(subjects.for_site(subjects.RESPONSES, SITE), pack(response))

    async def advance(self, seconds: int) -> None:
        """Let time pass, one mothership tick per second."""
        for _ in range(seconds):
            await self.clock.advance(1)
            await self.ms.tick()

    async def enable(self, plug_id: str, user_id: str) -> None:
        await self.ms.choose(plug_id, Prompt.ENABLE_SOCKET, user_id)

    async def add_driver(self, user_id: str, credit_cents: int = CREDIT_CENTS) -> None:
        await self.repo.users.ensure_user(user_id, user_id, f"{user_id}@example.invalid")
        await self.repo.ledger.post(
            ledger.adjustment(user_id, f"start:{user_id}", credit_cents, 0, "test", "start credit")
        )


async def restart(site: Site) -> Site:
    """The same site after its mothership died: a new one, hydrated from what the store holds."""
    engine = make_engine(str(site.repo.engine.url))
    repo = Repository(engine)
    ms = Mothership(site.bus, repo, ReadingSink(engine), site.clock, site.ms.config)
    await ms.prepare()
    return Site(ms, site.clock, repo, site.bus, site.plug_ids, site.sockets, site.commands)


async def make_site(
    db_path: Path, plugs: int = 2, circuit_limit_a: float = 32.0, **config: object
) -> Site:
    """A site of ``plugs`` plugs on one circuit, announced and read once, stored at ``db_path``."""
    clock = FakeClock()
    bus = MemoryBus(clock)
    engine = make_engine(sqlite_url(db_path))
    await create_schema(engine)
    repo = Repository(engine)
    await repo.sites.ensure_site(SITE, SITE, 30, "AUD")
    await repo.sites.ensure_circuit(circuit_key(SITE, FUZE), SITE, circuit_limit_a)
    ms = Mothership(bus, repo, ReadingSink(engine), clock, MothershipConfig(**config))  # type: ignore[arg-type]
    await ms.prepare()
    plug_ids = [f"sim:fake:{n}" for n in range(plugs)]
    announcement = pb.DeviceAnnouncement(
        site_id=SITE,
        announcement_id="a1",
        devices=[pb.Device(plug_id=p, fuze_id=FUZE, model="fake") for p in plug_ids],
    )
    await ms.handlers.on_announce(
        FakeMessage(subjects.for_site(subjects.ANNOUNCE, SITE), pack(announcement))
    )
    site = Site(ms, clock, repo, bus, plug_ids, {p: Socket() for p in plug_ids})

    async def record_command(msg: Message) -> None:
        site.commands.append(unpack(msg.data, pb.LocalStateRequest))
        await msg.ack()

    await bus.subscribe(subjects.all_sites(subjects.COMMANDS), "site-relay", record_command)
    await site.read()  # first readings: every plug leaves INITIALISING
    return site
