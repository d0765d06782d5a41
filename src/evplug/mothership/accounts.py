"""Each driver's account across their open sessions: one balance that all of them spend, and the
auto top-up that keeps it from running out mid-session.

After each batch of readings (and each balance change) every session of the account gets, as its
credit, the balance less what the account's other sessions have accrued (``core.credit``), so
together they stop at the balance. When what is left falls below the driver's threshold, one
off-session charge is asked for per crossing (keyed on the account and its last credit), however
many plugs cross it together; it runs in the background, and a success raises every session's
credit. A decline pauses auto top-up (``payments.auto_top_up``): the sessions run on until the
money actually runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

import structlog

from evplug.clock import Clock
from evplug.core import credit
from evplug.core.plug import Effect, Plug, SessionClosed
from evplug.core.pricing import DEFAULT_CURRENCY
from evplug.mothership.actions import open_session
from evplug.mothership.registry import PlugRegistry
from evplug.payments.auto_top_up import AutoTopUps
from evplug.payments.events import hold_of_guest
from evplug.payments.guest import GuestHolds
from evplug.store.records import AutoTopUpRecord
from evplug.store.repository import Repository

log = structlog.get_logger(__name__)

Apply = Callable[[Plug, list[Effect]], Awaitable[bool]]


class Accounts:
    def __init__(
        self,
        registry: PlugRegistry,
        repo: Repository,
        clock: Clock,
        apply: Apply,
        top_ups: AutoTopUps | None = None,
        guests: GuestHolds | None = None,
    ) -> None:
        self.registry = registry
        self.repo = repo
        self.clock = clock
        self.apply = apply
        self.top_ups = top_ups
        self.guests = guests
        self._asked: set[str] = set()  # crossings already charged for (or being charged)
        self._charging: set[asyncio.Task[None]] = set()
        # Read once while the driver has sessions, so readings cost no database read: a balance
        # changes only by a close (seen here as an event) or a posting (a BalanceChanged).
        self._balances: dict[str, int] = {}
        self._auto: dict[str, AutoTopUpRecord | None] = {}
        self._forgotten = 0  # balances dropped from the cache, ever: a read racing one is stale
        self._due: set[str] = set()  # accounts whose sessions read since they were shared out
        self._sharing: asyncio.Future[None] | None = None

    def on_event(self, effect: object) -> None:
        if isinstance(effect, SessionClosed):
            self._forget(effect.user_id)
            # The account's other sessions may spend what this one no longer accrues.
            self._due.add(effect.user_id)
            self._share_soon()
            if self.guests is not None and hold_of_guest(effect.user_id):
                self._background(self._settle_guest(effect))

    async def _settle_guest(self, closed: SessionClosed) -> None:
        assert self.guests is not None
        try:
            receipt = (
                f"Charging at {closed.plug_id}: {closed.energy_wh / 1000:.3f} kWh at"
                f" {closed.price_cents_per_kwh} c/kWh, {closed.cost_cents} c."
            )
            await self.guests.settle(closed.user_id, closed.cost_cents, receipt)
        except Exception:
            log.exception("guest.settle_failed", user_id=closed.user_id)

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._charging.add(task)
        task.add_done_callback(self._charging.discard)

    async def balance_changed(self, user_id: str) -> None:
        """A posting (or new auto top-up settings): read them again, share the balance anew."""
        self._forget(user_id)
        self._auto.pop(user_id, None)
        await self.check(user_id)

    def _forget(self, user_id: str) -> None:
        self._balances.pop(user_id, None)
        self._forgotten += 1

    def readings(self, plug_ids: Iterable[str]) -> None:
        """Readings came for these plugs: their accounts' sessions share the balance anew.

        Soon, not now: the telemetry handler never waits for it (a balance may have to be read
        from the store). One task at a time works through every account that is due, so a burst
        of readings asks once per account, and its balances are read in bulk.
        """
        if self.top_ups is None and not self.registry.users_sharing:
            return  # no account whose sessions readings move (``_moves_with_readings``)
        plugs = self.registry.plugs
        users = {user for p in plug_ids if p in plugs and (user := plugs[p].user_id)}
        self._due.update(u for u in users if self._moves_with_readings(u))
        self._share_soon()

    def _moves_with_readings(self, user_id: str) -> bool:
        """Whether readings can change what this account's sessions may spend, or make its auto
        top-up due. One session alone may spend the whole balance however much it accrues (its
        credit changes only with the balance, which postings and closes announce)."""
        if user_id in self.registry.users_sharing:
            return True
        if self.top_ups is None:
            return False
        auto = self._auto.get(user_id, ())  # () when not read yet
        return auto == () or (auto is not None and not auto.paused_reason)

    def _share_soon(self) -> None:
        if self._due and self._sharing is None:
            self._sharing = asyncio.ensure_future(self._share_due())

    async def _share_due(self) -> None:
        try:
            while self._due:
                due, self._due = sorted(self._due), set()
                try:
                    await self._check_all(due)
                except Exception:
                    # The next readings of these plugs make them due again.
                    log.exception("session.credit_share_failed", accounts=len(due))
        finally:
            self._sharing = None

    async def check(self, user_id: str) -> None:
        await self._check_all([user_id])

    async def _check_all(self, user_ids: list[str]) -> None:
        for user_id in user_ids:
            if not self.registry.plugs_of_user(user_id):
                self._balances.pop(user_id, None)
                self._auto.pop(user_id, None)
        unread = [u for u in user_ids if u not in self._balances]
        if unread:
            forgotten = self._forgotten
            read = await self.repo.ledger.balances(unread)
            if self._forgotten != forgotten:
                # A posting or a close landed meanwhile: this read may predate it. Ask again.
                read = {}
                self._due.update(unread)
                self._share_soon()
            for user_id in unread:
                # Kept only while the driver has sessions (one may have closed meanwhile).
                if user_id in read and self.registry.plugs_of_user(user_id):
                    self._balances[user_id] = read[user_id]
        for user_id in user_ids:
            balance = self._balances.get(user_id)
            if balance is None:
                continue
            now_ms = self.clock.now_ms()
            # Read together, after the last await: the sessions' accruals as of one moment.
            plugs = self.registry.plugs_of_user(user_id)
            sessions = [open_session(p) for p in plugs]
            credits = credit.session_credits(balance, sessions)
            for plug in plugs:
                limit = credits[plug.plug_id]
                if plug.session_id and plug.user_id == user_id and plug.credit_cents != limit:
                    await self.apply(plug, plug.credit_changed(limit, now_ms))
            await self._top_up_if_due(user_id, balance, sessions)

    async def _top_up_if_due(
        self, user_id: str, balance: int, sessions: list[credit.OpenSession]
    ) -> None:
        if self.top_ups is None:
            return
        if user_id not in self._auto:
            self._auto[user_id] = await self.repo.payments.auto_top_up(user_id)
        auto = self._auto[user_id]
        if auto is None or auto.paused_reason:
            return
        if not credit.top_up_due(balance, sessions, auto.threshold_cents):
            return
        # Due by the balance held here, which a credit may have overtaken: the last credit's key
        # first, then the balance as it is now. A credit landing between them leaves an old key
        # with a new balance (not due), never a new key with an old balance (asked twice).
        last = await self.repo.ledger.last_credit_key(user_id)
        balance = await self.repo.ledger.balance(user_id)
        if not credit.top_up_due(balance, sessions, auto.threshold_cents):
            return
        key = credit.top_up_key(user_id, auto.threshold_cents, last)
        if key in self._asked:
            return
        self._asked.add(key)
        currency = await self._currency(sessions[0].plug_id)
        self._background(self._top_up(user_id, key, currency))

    async def _top_up(self, user_id: str, key: str, currency: str) -> None:
        assert self.top_ups is not None
        try:
            result = await self.top_ups.charge(user_id, key, currency)
            log.info("session.auto_top_up", user_id=user_id, status=result.status)
            if result.status == "unavailable":
                self._asked.discard(key)  # the provider was away: the next readings ask again
            await self.balance_changed(user_id)  # credited, or paused
        except Exception:
            self._asked.discard(key)
            log.exception("session.auto_top_up_failed", user_id=user_id)

    async def _currency(self, plug_id: str) -> str:
        site = await self.repo.sites.get_site(self.registry.site_of[plug_id])
        return site.currency if site else DEFAULT_CURRENCY

    async def drain(self) -> None:
        """Let the charges under way finish (stopping must not cut one off half recorded)."""
        if self._sharing is not None:
            await self._sharing
        for task in list(self._charging):
            with contextlib.suppress(Exception):
                await task
