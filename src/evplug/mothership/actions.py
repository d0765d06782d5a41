"""What drivers (and technicians) ask of a plug, checked before the state machine sees it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from evplug.clock import Clock
from evplug.core import credit
from evplug.core.plug import Effect, Plug, Prompt
from evplug.core.pricing import DEFAULT_PRICE_CENTS_PER_KWH
from evplug.mothership.registry import PlugRegistry
from evplug.store.repository import Repository
from evplug.store.sql import UnknownUser

Apply = Callable[[Plug, list[Effect]], Awaitable[object]]


class ActionRefused(ValueError):
    """A driver's request that cannot be carried out, with a message the driver can act on."""


class DriverActions:
    def __init__(
        self,
        registry: PlugRegistry,
        repo: Repository,
        clock: Clock,
        apply: Apply,
        min_start_credit_cents: int,
    ) -> None:
        self.registry = registry
        self.repo = repo
        self.clock = clock
        self.apply = apply
        self.min_start_credit_cents = min_start_credit_cents

    async def choose(self, plug_id: str, prompt: Prompt, user_id: str) -> Plug:
        """A driver picked one of the prompts the plug offers."""
        plug = self.registry.get(plug_id)
        if prompt is Prompt.ENABLE_SOCKET:
            self._refuse_if_busy(plug, user_id)
            balance, price = await self._balance_and_price(plug, user_id)
            # After the awaits: the account's other sessions as they are now.
            self._refuse_if_busy(plug, user_id)
            others = [open_session(p) for p in self.registry.plugs_of_user(user_id)]
            available = credit.available_cents(balance, others)
            if available < self.min_start_credit_cents:
                raise ActionRefused(
                    "your balance is too low to start"
                    + (" another session" if others else "")
                    + ": top up first"
                )
            effects = plug.choose(
                prompt,
                self.clock.now_ms(),
                session_id=uuid.uuid4().hex,
                user_id=user_id,
                credit_cents=available,
                price_cents_per_kwh=price,
            )
        else:
            if plug.user_id and plug.user_id != user_id:
                raise ActionRefused("this socket is in use by another driver")
            effects = plug.choose(prompt, self.clock.now_ms())
        await self.apply(plug, effects)
        return plug

    async def _balance_and_price(self, plug: Plug, user_id: str) -> tuple[int, int]:
        try:
            user = await self.repo.users.get_user(user_id)
        except UnknownUser:
            raise ActionRefused("no such driver: sign in again") from None
        site = await self.repo.sites.get_site(self.registry.site_of[plug.plug_id])
        price = site.price_cents_per_kwh if site else DEFAULT_PRICE_CENTS_PER_KWH
        return user.balance_cents, price

    def _refuse_if_busy(self, plug: Plug, user_id: str) -> None:
        if plug.user_id == user_id:
            raise ActionRefused(f"you already have a session on {plug.plug_id}")


def open_session(plug: Plug) -> credit.OpenSession:
    return credit.OpenSession(plug.plug_id, plug.energy_wh, plug.price_cents_per_kwh)
