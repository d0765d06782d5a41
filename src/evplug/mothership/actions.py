"""What drivers (and technicians) ask of a plug, checked before the state machine sees it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from evplug.clock import Clock
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
            terms = await self._session_terms(plug, user_id)
            self._refuse_if_busy(user_id)  # again: another Enable may have come in meanwhile
            effects = plug.choose(prompt, self.clock.now_ms(), **terms)
        else:
            if plug.user_id and plug.user_id != user_id:
                raise ActionRefused("this socket is in use by another driver")
            effects = plug.choose(prompt, self.clock.now_ms())
        await self.apply(plug, effects)
        return plug

    async def _session_terms(self, plug: Plug, user_id: str) -> dict[str, Any]:
        self._refuse_if_busy(user_id)
        try:
            user = await self.repo.users.get_user(user_id)
        except UnknownUser:
            raise ActionRefused("no such driver: sign in again") from None
        if user.balance_cents < self.min_start_credit_cents:
            raise ActionRefused("your balance is too low to start: top up first")
        site = await self.repo.sites.get_site(self.registry.site_of[plug.plug_id])
        price = site.price_cents_per_kwh if site else DEFAULT_PRICE_CENTS_PER_KWH
        return {
            "session_id": uuid.uuid4().hex,
            "user_id": user_id,
            "credit_cents": user.balance_cents,
            "price_cents_per_kwh": price,
        }

    def _refuse_if_busy(self, user_id: str) -> None:
        busy = self.registry.plug_of_user(user_id)
        if busy is not None:
            raise ActionRefused(f"you already have a session on {busy}")
