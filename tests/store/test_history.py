"""What a driver's pages read back: sessions a page at a time, who holds a plug, a session's
power curve, the latest transactions. Each test on SQLite and on PostgreSQL."""

from __future__ import annotations

from evplug.core import ledger
from evplug.core.plug import Plug, SessionClosed, SessionOpened
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink


async def _open(repo: Repository, session_id: str, started_ms: int, user: str = "u") -> None:
    await repo.sessions.open_session(
        SessionOpened(session_id, "p", user, started_ms, 30), Plug("p", "f").snapshot()
    )


async def _close(repo: Repository, session_id: str, started_ms: int, ended_ms: int) -> None:
    closed = SessionClosed(session_id, "p", "u", started_ms, ended_ms, 100.0, 3, 30, "driver")
    await repo.sessions.close_session(closed, Plug("p", "f").snapshot())


async def test_sessions_come_newest_first_a_page_at_a_time(repo: Repository) -> None:
    for n in range(5):
        await _open(repo, f"s{n}", 1000 * n)
        await _close(repo, f"s{n}", 1000 * n, 1000 * n + 500)
    first = await repo.sessions.sessions_of_user("u", limit=2)
    second = await repo.sessions.sessions_of_user("u", limit=2, offset=2)
    last = await repo.sessions.sessions_of_user("u", limit=2, offset=4)
    assert [s.id for s in first + second + last] == ["s4", "s3", "s2", "s1", "s0"]


async def test_the_open_session_names_the_plugs_current_user(repo: Repository) -> None:
    await repo.users.ensure_user("v", "Other", "v@example.invalid")
    assert await repo.sessions.open_session_on_plug("p") is None
    await _open(repo, "old", 10)
    await _close(repo, "old", 10, 20)
    assert await repo.sessions.open_session_on_plug("p") is None
    await _open(repo, "now", 30, user="v")
    current = await repo.sessions.open_session_on_plug("p")
    assert current is not None and (current.id, current.user_id) == ("now", "v")
    assert [s.id for s in await repo.sessions.open_sessions_of_user("v")] == ["now"]
    assert await repo.sessions.open_sessions_of_user("u") == []


async def test_a_sessions_power_readings_are_those_of_its_plug_while_it_ran(
    repo: Repository,
) -> None:
    sink = ReadingSink(repo.engine)
    rows = [("p", t, 1, 10.0, 230.0, 1.0, float(t), None) for t in range(0, 100, 10)]
    await sink.add([*rows, ("other", 50, 1, 1.0, 230.0, 1.0, 9999.0, None)])
    await sink.flush()
    await _open(repo, "s", 20)
    running = await repo.sessions.get_session("s")
    assert running is not None
    assert [t for t, _ in await repo.sessions.power_readings(running)] == list(range(20, 100, 10))
    await _close(repo, "s", 20, 60)
    ended = await repo.sessions.get_session("s")
    assert ended is not None
    assert await repo.sessions.power_readings(ended) == [(t, float(t)) for t in range(20, 70, 10)]


async def test_latest_transactions_come_newest_first(repo: Repository) -> None:
    for n in range(3):
        await repo.ledger.post(ledger.top_up("u", f"pi_{n}", 1000 + n, n))
    latest = await repo.ledger.latest_entries("u", limit=2)
    assert [e.amount_cents for e in latest] == [1002, 1001]
    rest = await repo.ledger.latest_entries("u", limit=2, offset=2)
    assert [e.amount_cents for e in rest] == [1000]
