"""One mothership, 100,000 plugs: transitions in a burst, checkpoints, start-up and memory.

The store (SQLite, in a temporary directory) holds 100 sites of 1,000 plugs; 30% of the plugs
are in a session, with real (uuid) session and user ids, and as many more drivers are idle.

- Burst: three sites come back online at once, their 3,000 charging plugs' relays found off:
  each plug transitions (twice) and is commanded on again. Their chunks come first, then a round
  of plain readings from the other sites. ``transitions_per_s`` is transitions on disk per
  second, from the burst's first chunk until its last transition is committed;
  ``reading_rate_share_during_burst`` is the readings handled per second in that window (the
  burst's own included) over the rate of the same round without a burst.
- Checkpoint: every plug in session has moved; one checkpoint's time (``checkpoint_ms_30k``, the
  median of 5).
  Then checkpoints run back to back, every plug in session moved before each, while drivers
  press Enable on idle plugs: ``enable_p99_ms_during_checkpoint``.
- Wall times are what a driver would see; the CPU times beside them, and the share of a core
  this process gets (``cpu_share_of_a_core``), tell a slow machine from slow code.
- Start-up, in a child process so its peak is its own: hydration of every plug and the first
  status of each (``hydrate_s_100k``), the child's peak RSS (VmHWM, ``hydrate_peak_rss_mb``),
  and its RSS growth per plug after hydration and a reading for every plug
  (``rss_bytes_per_plug``). The plug-status bucket lives in the broker, not in the mothership,
  so the child puts statuses into a bucket that only counts them.

Usage: python bench/scale.py [--plugs 100000] [--sessions 0.3] [--burst 3000]
Ends with one JSON line of its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack
from evplug.core.plug import Plug, Prompt, State, Transitioned
from evplug.mothership.admission import LoadSettings
from evplug.mothership.runtime import Mothership, MothershipConfig
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink

SITE_PLUGS = 1_000
CHUNK = 64
START_MS = 1_700_000_000_000
HOUR_MS = 3_600_000


def site_of(n: int) -> str:
    return f"site-{n // SITE_PLUGS:03d}"


def plug_id(n: int) -> str:
    return f"shelly:{n // 4:012x}:{n % 4}"


# -- the store -------------------------------------------------------------------------------


def stored_plug(n: int, in_session: bool) -> Plug:
    """A plug as a running system leaves it: read a minute ago, charging or idle."""
    pid = plug_id(n)
    plug = Plug(pid, pid.rsplit(":", 1)[0])
    plug.state = State.ACCOUNT_NULL
    plug.last_reading_ms = START_MS - 60_000
    plug.last_counter_wh = plug.billed_to_wh = 1234.5 + n % 97
    plug.counter_ms = plug.last_reading_ms
    plug.commands_sent = 2
    plug.pending_request_id = f"{pid}#2@{START_MS - HOUR_MS}"
    plug.command_issued_ms = plug.state_since_ms = START_MS - HOUR_MS
    if in_session:
        plug.state = State.CHARGING
        plug.power_w = 2300.0
        plug.session_id = uuid.uuid4().hex
        plug.user_id = uuid.uuid4().hex
        plug.session_started_ms = START_MS - HOUR_MS
        plug.price_cents_per_kwh = 30
        plug.credit_cents = 50_000
        plug.energy_wh = 2300.0
        plug.admitted_ms = START_MS - HOUR_MS
    return plug


def build_store(path: Path, plugs: int, sessions: float) -> list[str]:
    """The store of a running system; returns the ids of idle drivers, for Enable."""
    asyncio.run(_schema(path))
    in_session = int(plugs * sessions)
    db = sqlite3.connect(path)
    sites = sorted({site_of(n) for n in range(plugs)})
    db.executemany("INSERT INTO sites VALUES (?, ?, 30, 'AUD')", [(s, s) for s in sites])
    db.executemany(
        "INSERT INTO circuits (id, site_id, limit_a) VALUES (?, ?, 1e9)",
        [(f"{s}/main", s) for s in sites],
    )
    rows, users, open_sessions = [], [], []
    for n in range(plugs):
        plug = stored_plug(n, n < in_session)
        snapshot = plug.snapshot()
        snapshot["state"] = str(plug.state)
        snapshot["actual"] = int(plug.actual)
        rows.append((plug.plug_id, site_of(n), plug.fuze_id, str(plug.state), json.dumps(snapshot)))
        if plug.session_id:
            users.append((plug.user_id, plug.user_id, f"{plug.user_id}@example.invalid", 50_000))
            open_sessions.append(
                (plug.session_id, plug.plug_id, plug.user_id, plug.session_started_ms, 30)
            )
    idle = [uuid.uuid4().hex for _ in range(in_session)]
    users += [(u, u, f"{u}@example.invalid", 50_000) for u in idle]
    db.executemany(
        "INSERT INTO plugs (id, site_id, fuze_id, label, model, state, snapshot, updated_ms)"
        " VALUES (?, ?, ?, '', 'shelly', ?, ?, 0)",
        rows,
    )
    db.executemany(
        "INSERT INTO users (id, name, email, balance_cents, email_verified, role, created_ms)"
        " VALUES (?, ?, ?, ?, 1, 'driver', 0)",
        users,
    )
    db.executemany(
        "INSERT INTO sessions (id, plug_id, user_id, started_ms, price_cents_per_kwh, energy_wh,"
        " end_reason) VALUES (?, ?, ?, ?, ?, 0, '')",
        open_sessions,
    )
    db.commit()
    db.close()
    return idle


async def _schema(path: Path) -> None:
    engine = make_engine(sqlite_url(path))
    await create_schema(engine)
    await engine.dispose()


# -- readings --------------------------------------------------------------------------------


def chunks_for(
    numbers: range, ts: int, actual: int, power_w: float, wh: float
) -> list[tuple[str, bytes, int]]:
    """One reading for each plug, in chunks of one site each as relay managers send them."""
    out = []
    start = numbers.start
    while start < numbers.stop:
        site = site_of(start)
        stop = min(start + CHUNK, numbers.stop, (start // SITE_PLUGS + 1) * SITE_PLUGS)
        chunk = pb.ReadingChunk(site_id=site, seq=ts + start)
        for n in range(start, stop):
            chunk.readings.add(
                plug_id=plug_id(n),
                timestamp_ms=ts,
                actual_state=actual,
                current_a=power_w / 230,
                voltage_v=230.0,
                power_factor=0.99,
                active_power_w=power_w,
                energy_wh=1234.5 + n % 97 + wh,
            )
        out.append((site, pack(chunk), stop - start))
        start = stop
    return out


class _Msg:
    __slots__ = ("acked", "data", "deliveries", "msg_id", "subject")

    def __init__(self, site: str, data: bytes) -> None:
        self.subject = subjects.for_site(subjects.TELEMETRY, site)
        self.data = data
        self.msg_id = ""
        self.deliveries = 1
        self.acked = False

    async def ack(self) -> None:
        self.acked = True

    async def nak(self) -> None:
        return None


async def feed(ms: Mothership, chunks: list[tuple[str, bytes, int]], counted: list[int]) -> None:
    for site, data, readings in chunks:
        await ms.handlers.on_telemetry(_Msg(site, data))
        counted[0] += readings
        await asyncio.sleep(0)  # as messages from a socket would, let the loop's other work in


# -- the parts measured ----------------------------------------------------------------------


class CountingBucket:
    """A plug-status bucket that keeps nothing: in production it is the broker's."""

    def __init__(self) -> None:
        self.puts = 0

    async def put(self, key: str, value: bytes) -> int:
        self.puts += 1
        return self.puts


class _Bus(MemoryBus):
    async def key_value(self, bucket: str) -> CountingBucket:  # type: ignore[override]
        return CountingBucket()


async def started(path: Path, clock: FakeClock) -> Mothership:
    engine = make_engine(sqlite_url(path))
    config = MothershipConfig(load=LoadSettings(stagger_ms=0))
    ms = Mothership(_Bus(clock), Repository(engine), ReadingSink(engine), clock, config)
    await ms.prepare()
    return ms


async def burst(ms: Mothership, clock: FakeClock, plugs: int, in_session: int, burst: int):
    """transitions/s during the burst, and the reading rate then over the rate without it."""
    plain = range(in_session, plugs)
    done_at: list[float] = []
    transitions = [0]
    expected = 2 * burst

    def count(effect: object) -> None:
        if isinstance(effect, Transitioned) and int(effect.plug_id.split(":")[1], 16) * 4 < burst:
            transitions[0] += 1
            if transitions[0] == expected:
                done_at.append(time.perf_counter())

    ms.events.attach(count)
    rates = []
    for with_burst in (False, True, False, True):
        await clock.advance(2)
        now = clock.now_ms()
        round_chunks = chunks_for(plain, now, pb.ACTUAL_STATE_OFF, 0.0, 0.0)
        if with_burst:  # three sites back online: their relays were switched off meanwhile
            round_chunks = (
                chunks_for(range(burst), now, pb.ACTUAL_STATE_OFF, 0.0, 5.0) + round_chunks
            )
        counted = [0]
        transitions[0], done_at[:] = 0, []
        gc.collect()
        started_at = time.perf_counter()
        feeding = asyncio.create_task(feed(ms, round_chunks, counted))
        if with_burst:
            while not done_at:  # polled: the window ends within a millisecond of the last
                await asyncio.sleep(0.001)
                if not done_at and feeding.done() and not ms.pending.waiting_plugs():
                    raise RuntimeError(f"{transitions[0]} of {expected} transitions came")
            window = done_at[0] - started_at
            rates.append((counted[0] / window, expected / window))
            await feeding
        else:
            await feeding
            await ms.pending.idle()
            rates.append((counted[0] / (time.perf_counter() - started_at), 0.0))
        await ms.sink.flush()
        await ms.pending.idle()
        if with_burst:  # back to charging for the next burst
            for n in range(burst):
                plug = ms.plugs[plug_id(n)]
                plug.state, plug.command_issued_ms, plug.relay_restarts = State.CHARGING, 0, 0
    plain_rate = statistics.median([rates[0][0], rates[2][0]])
    shares = [rates[1][0] / plain_rate, rates[3][0] / plain_rate]
    return statistics.median([rates[1][1], rates[3][1]]), min(shares), plain_rate


async def checkpoints(ms: Mothership, in_session: int, idle_users: list[str]):
    """One checkpoint of every plug in session, then Enable's latency while they run."""
    session_plugs = [plug_id(n) for n in range(in_session)]

    def all_moved() -> None:
        for p in session_plugs:
            ms.checkpoints.touched(p)

    times = []
    for _ in range(5):
        all_moved()
        gc.collect()
        started_at, cpu = time.perf_counter(), time.process_time()
        await ms.checkpoint()
        times.append((time.perf_counter() - started_at, time.process_time() - cpu))
    one_s, cpu_s = statistics.median(times)  # one WAL checkpoint of SQLite's may land in any

    stop = asyncio.Event()

    async def back_to_back() -> int:
        runs = 0
        while not stop.is_set():
            all_moved()
            await ms.checkpoint()
            runs += 1
        return runs

    running = asyncio.create_task(back_to_back())
    latencies = []
    idle_plugs = [plug_id(n) for n in range(in_session, len(ms.plugs))]
    rng = random.Random(1)
    for user, plug in zip(idle_users[:300], rng.sample(idle_plugs, 300), strict=True):
        await asyncio.sleep(rng.uniform(0.0, 0.02))
        t = time.perf_counter()
        await ms.choose(plug, Prompt.ENABLE_SOCKET, user)
        latencies.append((time.perf_counter() - t) * 1000)
    stop.set()
    runs = await running
    latencies.sort()
    return one_s * 1000, cpu_s * 1000, latencies[int(len(latencies) * 0.99) - 1], runs


# -- the child: start-up and memory ----------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


async def child(path: Path, plugs: int, sessions: float) -> None:
    clock = FakeClock(START_MS)
    gc.collect()
    before = _status_kb("VmRSS")
    started_at, cpu = time.perf_counter(), time.process_time()
    ms = await started(path, clock)
    hydrate_s, hydrate_cpu_s = time.perf_counter() - started_at, time.process_time() - cpu
    assert len(ms.plugs) == plugs
    await clock.advance(2)
    in_session = int(plugs * sessions)
    now = clock.now_ms()
    charging = chunks_for(range(in_session), now, pb.ACTUAL_STATE_ON, 2300.0, 1.0)
    await feed(
        ms, charging + chunks_for(range(in_session, plugs), now, pb.ACTUAL_STATE_OFF, 0, 0), [0]
    )
    await ms.sink.flush()
    await ms.pending.idle()
    gc.collect()
    after = _status_kb("VmRSS")
    assert all(p.last_reading_ms == now for p in ms.plugs.values()), "a plug had no reading"
    print(
        json.dumps(
            {
                "hydrate_s": hydrate_s,
                "hydrate_cpu_s": hydrate_cpu_s,
                "peak_rss_mb": _status_kb("VmHWM") / 1024,
                "rss_bytes_per_plug": (after - before) * 1024 / plugs,
            }
        )
    )


async def measure(path: Path, args: argparse.Namespace, idle_users: list[str]) -> dict:
    in_session = int(args.plugs * args.sessions)
    clock = FakeClock(START_MS)
    ms = await started(path, clock)
    transitions_per_s, share, plain_rate = await burst(
        ms, clock, args.plugs, in_session, args.burst
    )
    print(f"burst: {transitions_per_s:,.0f} transitions/s (target >= 5,000)")
    print(f"readings: {plain_rate:,.0f}/s without the burst; {share:.2f} of it during (>= 0.9)")
    one_ms, cpu_ms, p99, runs = await checkpoints(ms, in_session, idle_users)
    print(
        f"checkpoint of {in_session:,} sessions: {one_ms:,.0f} ms (target <= 250),"
        f" {cpu_ms:,.0f} ms of CPU"
    )
    print(f"Enable p99 during {runs} checkpoints: {p99:,.0f} ms (target < 200)")
    await ms.repo.engine.dispose()
    return {
        "transitions_per_s": round(transitions_per_s),
        "reading_rate_share_during_burst": round(share, 3),
        "checkpoint_ms_30k": round(one_ms, 1),
        "checkpoint_cpu_ms_30k": round(cpu_ms, 1),
        "enable_p99_ms_during_checkpoint": round(p99, 1),
    }


def cpu_share(seconds: float = 0.5) -> float:
    """The share of a core a busy loop gets: wall times are worth this much CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        sum(range(1000))
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugs", type=int, default=100_000)
    parser.add_argument("--sessions", type=float, default=0.3, help="share of plugs in session")
    parser.add_argument("--burst", type=int, default=3_000, help="plugs changing state at once")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.plugs, args.sessions))
        return
    share = cpu_share()
    print(f"this process gets {share:.0%} of a core (the machine's load)", flush=True)
    with tempfile.TemporaryDirectory(prefix="evplug-scale-") as tmp:
        path = Path(tmp) / "scale.sqlite3"
        print(f"building a store of {args.plugs:,} plugs...", flush=True)
        idle_users = build_store(path, args.plugs, args.sessions)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(path),
                "--plugs",
                str(args.plugs),
                "--sessions",
                str(args.sessions),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        start = json.loads(out.strip().splitlines()[-1])
        print(
            f"start-up: {start['hydrate_s']:.2f} s (target <= 2),"
            f" {start['hydrate_cpu_s']:.2f} s of CPU"
        )
        print(f"peak RSS: {start['peak_rss_mb']:.0f} MB (target <= 250)")
        print(f"memory: {start['rss_bytes_per_plug']:,.0f} bytes per plug (target <= 2048)")
        figures = asyncio.run(measure(path, args, idle_users))
    figures |= {
        "hydrate_s_100k": round(start["hydrate_s"], 3),
        "hydrate_cpu_s_100k": round(start["hydrate_cpu_s"], 3),
        "hydrate_peak_rss_mb": round(start["peak_rss_mb"], 1),
        "rss_bytes_per_plug": round(start["rss_bytes_per_plug"]),
    }
    figures["cpu_share_of_a_core"] = round(min(share, cpu_share()), 2)
    print(json.dumps({"benchmark": "scale", "plugs": args.plugs, **figures}))


if __name__ == "__main__":
    main()
