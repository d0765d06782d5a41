"""What a signed-in driver can do and see, once, for the pages and the JSON API alike.

Every operation takes the signed-in driver's user id from the auth dependency, never from the
request body, and only ever shows that driver's own sessions and money. A refusal is a
``DriverError`` with the HTTP status and a sentence that says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import quote

from evplug.bus.base import Bus, NoResponders, RequestTimeout
from evplug.clock import Clock, SystemClock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.core.ledger import KEY_PREFIX, EntryKind
from evplug.core.plug import Prompt
from evplug.payments.events import guest_user_id
from evplug.payments.provider import (
    GUEST_MIN_HOLD_CENTS,
    MAX_TOP_UP_CENTS,
    MIN_TOP_UP_CENTS,
    PaymentsError,
    PaymentsProvider,
    Redirect,
)
from evplug.store.records import EntryRecord, SessionRecord
from evplug.store.repository import Repository
from evplug.store.sql import UnknownUser
from evplug.web import words
from evplug.web.chart import power_chart
from evplug.web.live import LiveView
from evplug.web.plug_view import PlugView, plug_view

T = TypeVar("T")
Code = pb.DriverReplyCode
_REPLY_STATUS = {
    Code.DRIVER_REPLY_CODE_UNKNOWN_PLUG: 404,
    Code.DRIVER_REPLY_CODE_REFUSED: 409,
    Code.DRIVER_REPLY_CODE_BAD_REQUEST: 422,
}
PAGE_SIZE = 20
TOP_UP_PRESETS_CENTS = (1_000, 2_000, 5_000)
# The original's auto top-up defaults: below $10, add $20.
AUTO_TOP_UP_THRESHOLD_CENTS = 1_000
AUTO_TOP_UP_AMOUNT_CENTS = 2_000
# Below this the home page warns: the original's default auto top-up threshold.
LOW_BALANCE_CENTS = 1_000
CSV_COLUMNS = (
    "session_id", "started_utc", "ended_utc", "duration_min", "kwh", "cost", "currency",
    "price_cents_per_kwh", "site", "plug_id", "end_reason",
)  # fmt: skip


class DriverError(Exception):
    """A request the driver must change: ``status`` is the HTTP status, ``message`` the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session as the history lists it."""

    session_id: str
    plug_id: str
    site_name: str
    started: str
    ended: str
    duration: str
    running: bool
    energy_wh: float
    kwh: str
    cost_cents: int | None
    cost: str
    price_cents_per_kwh: int
    price: str
    end_reason: str
    ended_words: str


@dataclass(frozen=True, slots=True)
class Transaction:
    when: str
    kind: str
    amount_cents: int
    amount: str
    memo: str
    receipt_url: str  # its receipt page, or "" for an entry that has none


@dataclass(frozen=True, slots=True)
class AutoTopUp:
    on: bool
    threshold_cents: int
    threshold: str
    amount_cents: int
    amount: str
    paused_reason: str  # why it is paused (a declined card...); "" while it works


@dataclass(frozen=True, slots=True)
class Card:
    id: str
    brand: str
    last4: str
    default: bool


@dataclass(frozen=True, slots=True)
class Home:
    balance_cents: int
    balance: str
    low_balance: bool
    plugs: list[PlugView]


@dataclass(frozen=True, slots=True)
class Money:
    balance_cents: int
    balance: str
    currency: str
    presets: list[tuple[int, str]]
    min_top_up_cents: int
    min_top_up: str
    payments: bool  # a provider is configured
    provider: str  # its name: "demo" takes no money
    auto_top_up: AutoTopUp
    cards: list[Card]
    transactions: list[Transaction]


class DriverOps:
    def __init__(
        self,
        bus: Bus,
        repo: Repository,
        live: Callable[[], LiveView],
        payments: PaymentsProvider | None,
        *,
        currency: str,
        min_start_credit_cents: int,
        request_timeout_s: float,
        low_balance_cents: int = LOW_BALANCE_CENTS,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.bus = bus
        self.repo = repo
        self._live = live
        self.payments = payments
        self.currency = currency
        self.min_start_credit_cents = min_start_credit_cents
        self.low_balance_cents = low_balance_cents
        self.request_timeout_s = request_timeout_s

    # -- plugs ------------------------------------------------------------------------------

    def status(self, plug_id: str) -> pb.PlugStatus:
        status = self._live().statuses.get(plug_id)
        if status is None:
            raise DriverError(404, f"no plug {plug_id!r}: check the code on the socket's label")
        return status

    def find_plug(self, code: str) -> str:
        """The plug a typed code names: its id, or its page's URL as a QR code carries it."""
        typed = code.strip().rstrip("/")
        if "/plug/" in typed:
            typed = typed.rsplit("/plug/", 1)[1]
        statuses = self._live().statuses
        if typed in statuses:
            return typed
        folded = {p.casefold(): p for p in statuses}
        if typed.casefold() in folded:
            return folded[typed.casefold()]
        raise DriverError(
            404, f"no plug with the code {code.strip()!r}: type it as printed on the label"
        )

    async def plug(self, user_id: str, plug_id: str) -> PlugView:
        return await self._view(user_id, self.status(plug_id), {})

    async def visitor_plug(self, plug_id: str, hold_id: str = "") -> PlugView:
        """The plug as a visitor without an account sees it; with the id of the card hold they
        paid (the link the checkout sent them back with), their own session on it."""
        status = self.status(plug_id)
        guest = guest_user_id(hold_id) if hold_id else ""
        try:
            balance = await self.repo.ledger.balance(guest) if guest else 0
        except UnknownUser:  # the hold is not authorized yet
            guest, balance = "", 0
        return await self._view(guest, status, {}, balance)

    async def _view(
        self,
        user_id: str,
        status: pb.PlugStatus,
        owners: dict[str, str],
        balance_cents: int | None = None,
    ) -> PlugView:
        """``owners`` caches session id -> driver across the updates of one stream."""
        owner = owners.get(status.session_id)
        if status.session_id and owner is None:
            session = await self.repo.sessions.get_session(status.session_id)
            if session is not None:  # a session not in the store yet is asked for again
                owner = owners[status.session_id] = session.user_id
        site = await self.repo.sites.get_site(status.site_id)
        return plug_view(
            status,
            session_user_id=owner,
            user_id=user_id,
            site_name=site.name if site else status.site_id,
            balance_cents=await self.balance(user_id) if balance_cents is None else balance_cents,
            min_start_credit_cents=self.min_start_credit_cents,
        )

    async def choose(self, user_id: str, plug_id: str, prompt: Prompt) -> PlugView:
        """Send the driver's choice to the mothership; a plug in someone else's use is refused."""
        status = self.status(plug_id)
        current = await self._view(user_id, status, {})
        if current.in_use:
            raise DriverError(403, "this socket is in use by another driver: choose another one")
        request = pb.DriverRequest(
            request_id=uuid.uuid4().hex, user_id=user_id, plug_id=plug_id, prompt=prompt
        )
        try:
            data = await self.bus.request(
                subjects.for_site(subjects.DRIVER, status.site_id),
                pack(request),
                self.request_timeout_s,
            )
        except (NoResponders, RequestTimeout):
            raise DriverError(
                503,
                "the charging server is not answering: try again in a minute (operators: is"
                " `evplug mothership` running and on the same bus?)",
            ) from None
        reply = unpack(data, pb.DriverReply)
        if reply.code != Code.DRIVER_REPLY_CODE_OK:
            raise DriverError(_REPLY_STATUS.get(reply.code, 502), reply.reason)
        return await self._view(user_id, reply.status, {})

    async def follow(self, user_id: str, plug_id: str) -> AsyncIterator[PlugView]:
        """The plug's view now, then again each time its status changes, for one driver."""
        live = self._live()
        status = self.status(plug_id)
        queue = live.stream()
        owners: dict[str, str] = {}
        try:
            yield await self._view(user_id, status, owners)
            while (changed := await queue.get()) is not None:
                if changed.plug_id == plug_id:
                    with contextlib.suppress(asyncio.QueueEmpty):
                        # Only the newest matters: skip what a slow page has not sent yet.
                        while (newer := queue.get_nowait()) is not None:
                            if newer.plug_id == plug_id:
                                changed = newer
                    yield await self._view(user_id, changed, owners)
        finally:
            live.close_stream(queue)

    # -- home -------------------------------------------------------------------------------

    async def balance(self, user_id: str) -> int:
        try:
            return await self.repo.ledger.balance(user_id)
        except UnknownUser:
            raise DriverError(401, "your account is gone: sign in again") from None

    async def home(self, user_id: str) -> Home:
        balance = await self.balance(user_id)
        plugs = []
        for session in await self.repo.sessions.open_sessions_of_user(user_id):
            status = self._live().statuses.get(session.plug_id)
            if status is not None:
                plugs.append(await self._view(user_id, status, {session.id: user_id}))
        return Home(
            balance_cents=balance,
            balance=words.money(balance, self.currency),
            low_balance=balance < self.low_balance_cents,
            plugs=plugs,
        )

    # -- sessions ---------------------------------------------------------------------------

    async def sessions(self, user_id: str, page: int) -> tuple[list[SessionRow], bool]:
        """One page (1 = newest) of the driver's sessions, and whether an older page exists."""
        if page < 1:
            raise DriverError(422, "page must be 1 or more")
        found = await self.repo.sessions.sessions_of_user(
            user_id, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE
        )
        rows = [await self._row(s) for s in found[:PAGE_SIZE]]
        return rows, len(found) > PAGE_SIZE

    async def session(self, user_id: str, session_id: str) -> tuple[SessionRow, str]:
        """A session of this driver and its power chart (SVG); another's is not found."""
        found = await self.repo.sessions.get_session(session_id)
        if found is None or found.user_id != user_id:
            raise DriverError(404, "no such session of yours: pick one from your Sessions")
        chart = power_chart(await self.repo.sessions.power_readings(found), "Power over time (kW)")
        return await self._row(found), chart

    async def sessions_csv(self, user_id: str) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        offset = 0
        while page := await self.repo.sessions.sessions_of_user(user_id, 500, offset):
            for session in page:
                writer.writerow(self._csv_row(session, await self._row(session)))
            offset += len(page)
        return out.getvalue()

    def _csv_row(self, s: SessionRecord, row: SessionRow) -> list[str | int]:
        minutes = "" if s.ended_ms is None else f"{(s.ended_ms - s.started_ms) / 60_000:.1f}"
        cost = "" if s.cost_cents is None else words.decimal(s.cost_cents)
        return [
            s.id, row.started, row.ended, minutes, f"{s.energy_wh / 1000:.3f}", cost,
            self.currency, s.price_cents_per_kwh, row.site_name, s.plug_id, s.end_reason,
        ]  # fmt: skip

    async def _row(self, s: SessionRecord) -> SessionRow:
        status = self._live().statuses.get(s.plug_id)
        site = await self.repo.sites.get_site(status.site_id) if status else None
        running = s.ended_ms is None
        return SessionRow(
            session_id=s.id,
            plug_id=s.plug_id,
            site_name=site.name if site else "",
            started=when(s.started_ms),
            ended="" if running else when(s.ended_ms or 0),
            duration="running" if running else words.duration((s.ended_ms or 0) - s.started_ms),
            running=running,
            energy_wh=round(s.energy_wh, 1),
            kwh=words.kwh(s.energy_wh),
            cost_cents=s.cost_cents,
            cost="" if s.cost_cents is None else words.money(s.cost_cents, self.currency),
            price_cents_per_kwh=s.price_cents_per_kwh,
            price=f"{words.money(s.price_cents_per_kwh, self.currency)} per kWh",
            end_reason=s.end_reason,
            ended_words=words.end_words(s.end_reason),
        )

    # -- money ------------------------------------------------------------------------------

    async def money(self, user_id: str, limit: int = 50) -> Money:
        balance = await self.balance(user_id)
        entries = await self.repo.ledger.latest_entries(user_id, limit=limit)
        customer = await self.repo.payments.customer(user_id)
        default_card = customer.default_payment_method if customer else ""
        return Money(
            balance_cents=balance,
            balance=words.money(balance, self.currency),
            currency=self.currency,
            presets=[(c, words.money(c, self.currency)) for c in TOP_UP_PRESETS_CENTS],
            min_top_up_cents=MIN_TOP_UP_CENTS,
            min_top_up=words.money(MIN_TOP_UP_CENTS, self.currency),
            payments=self.payments is not None,
            provider=self.payments.name if self.payments is not None else "",
            auto_top_up=await self.auto_top_up(user_id),
            cards=[
                Card(m.id, m.brand, m.last4, m.id == default_card)
                for m in await self.repo.payments.methods(user_id)
            ],
            transactions=[self._transaction(e) for e in entries],
        )

    def _transaction(self, entry: EntryRecord) -> Transaction:
        return Transaction(
            when=when(entry.created_ms),
            kind=entry.kind.replace("_", " "),
            amount_cents=entry.amount_cents,
            amount=words.money(entry.amount_cents, self.currency),
            memo=entry.memo,
            receipt_url=receipt_url(entry.idempotency_key),
        )

    async def auto_top_up(self, user_id: str) -> AutoTopUp:
        """The driver's auto top-up; off, the original's defaults to switch it on with."""
        found = await self.repo.payments.auto_top_up(user_id)
        threshold = found.threshold_cents if found else AUTO_TOP_UP_THRESHOLD_CENTS
        amount = found.amount_cents if found else AUTO_TOP_UP_AMOUNT_CENTS
        return AutoTopUp(
            on=found is not None,
            threshold_cents=threshold,
            threshold=words.money(threshold, self.currency),
            amount_cents=amount,
            amount=words.money(amount, self.currency),
            paused_reason=found.paused_reason if found else "",
        )

    async def set_auto_top_up(
        self, user_id: str, on: bool, threshold_cents: int, amount_cents: int
    ) -> AutoTopUp:
        """Switch auto top-up on (a paused one resumes) with these amounts, or off."""
        if on:
            if not 0 <= threshold_cents <= MAX_TOP_UP_CENTS:
                high = words.money(MAX_TOP_UP_CENTS, self.currency)
                raise DriverError(422, f"the threshold must be between $0 and {high}")
            if not MIN_TOP_UP_CENTS <= amount_cents <= MAX_TOP_UP_CENTS:
                low = words.money(MIN_TOP_UP_CENTS, self.currency)
                high = words.money(MAX_TOP_UP_CENTS, self.currency)
                raise DriverError(422, f"auto top up at least {low} and at most {high}")
            self._provider()
            await self.repo.payments.set_auto_top_up(user_id, threshold_cents, amount_cents)
        else:
            await self.repo.payments.stop_auto_top_up(user_id)
        # The mothership reads the new settings for the sessions under way.
        change = pb.BalanceChanged(
            user_id=user_id, ledger_key="auto-top-up-settings", timestamp_ms=self.clock.now_ms()
        )
        await self.bus.publish(subjects.BALANCE_CHANGED, pack(change))
        return await self.auto_top_up(user_id)

    def _provider(self) -> PaymentsProvider:
        if self.payments is None:
            raise DriverError(
                503, "payments are not set up on this server: ask its operator to configure them"
            )
        return self.payments

    async def top_up(self, user_id: str, amount_cents: int, return_url: str) -> Redirect:
        if not MIN_TOP_UP_CENTS <= amount_cents <= MAX_TOP_UP_CENTS:
            low = words.money(MIN_TOP_UP_CENTS, self.currency)
            high = words.money(MAX_TOP_UP_CENTS, self.currency)
            raise DriverError(422, f"top up at least {low} and at most {high}")
        provider = await self._customer(user_id)
        return await _handed_off(
            provider.start_top_up(user_id, amount_cents, self.currency, return_url)
        )

    async def manage_payment_methods(self, user_id: str, return_url: str) -> Redirect:
        provider = await self._customer(user_id)
        return await _handed_off(provider.manage_payment_methods(user_id, return_url))

    async def _customer(self, user_id: str) -> PaymentsProvider:
        """The provider, with this driver's customer made (again, if sign-up could not)."""
        provider = self._provider()
        account = await self.repo.users.get_user(user_id)
        await _handed_off(provider.ensure_customer(user_id, account.email))
        return provider

    async def guest_hold(self, plug_id: str, amount_cents: int, email: str) -> Redirect:
        """Pay by card without an account: a hold for the most the visitor wants to spend,
        at the provider; the session follows on the plug's page."""
        if not GUEST_MIN_HOLD_CENTS <= amount_cents <= MAX_TOP_UP_CENTS:
            low = words.money(GUEST_MIN_HOLD_CENTS, self.currency)
            high = words.money(MAX_TOP_UP_CENTS, self.currency)
            raise DriverError(422, f"hold at least {low} and at most {high}")
        provider = self._provider()
        site_id = await self.repo.sites.site_of_plug(plug_id)
        if site_id is None:
            raise DriverError(404, f"no plug {plug_id!r}: check the code on the socket's label")
        site = await self.repo.sites.get_site(site_id)
        currency = site.currency if site else self.currency
        follow = f"/plug/{plug_id}"
        return await _handed_off(
            provider.start_guest_hold(plug_id, amount_cents, currency, email, follow)
        )


async def _handed_off(call: Awaitable[T]) -> T:
    try:
        return await call
    except PaymentsError as exc:
        raise DriverError(502, f"the payments provider refused: {exc}; try again later") from None


def receipt_url(ledger_key: str) -> str:
    """The receipt page of a ledger entry: top-ups and sessions have one."""
    for kind, path in ((EntryKind.TOP_UP, "top-ups"), (EntryKind.SESSION_CHARGE, "sessions")):
        if ledger_key.startswith(KEY_PREFIX[kind]):
            return f"/receipts/{path}/{quote(ledger_key.removeprefix(KEY_PREFIX[kind]))}"
    return ""


def when(ms: int) -> str:
    """A moment as the history shows it, in UTC (the server does not know the phone's zone)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def dollars_to_cents(text: str) -> int:
    """A typed amount such as ``25`` or ``25.50`` in cents, exactly (no float on the way)."""
    cleaned = text.strip().lstrip("$").replace(",", "")
    whole, _, part = cleaned.partition(".")
    if not whole.isdigit() or not (part == "" or (part.isdigit() and len(part) <= 2)):
        raise DriverError(422, f"{text.strip()!r} is not an amount: type dollars, e.g. 25 or 25.50")
    return int(whole) * 100 + int(part.ljust(2, "0") or 0)
