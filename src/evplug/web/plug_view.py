"""A plug as one driver sees it: theirs, free, or in use by someone else.

The plug status on the bus never names its driver. Whose session it is comes from the store's
session row (keyed by the status's session id), so only that driver sees the figures and the
controls; everyone else reads "In use" and gets no buttons.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from evplug.contracts import evplug_pb2 as pb
from evplug.core.plug import Prompt
from evplug.web import words

# A plug whose relay the mothership has lost: no command can reach it.
_UNREACHABLE = (pb.ACTUAL_STATE_MIA,)


@dataclass(frozen=True, slots=True)
class PlugView:
    plug_id: str
    site_id: str
    site_name: str
    state: str
    words: str
    mine: bool
    in_use: bool  # by another driver
    not_responding: bool
    top_up_needed: bool
    prompts: list[str]
    power_w: float
    energy_wh: float
    cost_cents: int
    price_cents_per_kwh: int
    currency: str
    elapsed_ms: int
    queue_text: str

    def as_json(self) -> dict[str, Any]:
        shown = asdict(self)
        shown["kw"] = words.kw(self.power_w)
        shown["kwh"] = words.kwh(self.energy_wh)
        shown["cost"] = words.money(self.cost_cents, self.currency)
        shown["elapsed"] = words.duration(self.elapsed_ms) if self.mine else ""
        shown["price"] = f"{words.money(self.price_cents_per_kwh, self.currency)} per kWh"
        return shown


def plug_view(
    status: pb.PlugStatus,
    *,
    session_user_id: str | None,
    user_id: str,
    site_name: str,
    balance_cents: int,
    min_start_credit_cents: int,
) -> PlugView:
    """``session_user_id`` is the driver of the status's session (None: no session, or not
    found yet, which counts as someone else's)."""
    in_session = bool(status.session_id)
    mine = in_session and session_user_id == user_id
    in_use = in_session and not mine
    not_responding = status.actual_state in _UNREACHABLE or status.state in (
        "SENSING_START_NOT_RESPONDING",
        "ACCOUNT_REMOVAL_NOT_RESPONDING",
    )
    prompts = [] if in_use else list(status.prompts)
    top_up_needed = (
        not in_session
        and Prompt.ENABLE_SOCKET.value in prompts
        and balance_cents < min_start_credit_cents
    )
    if top_up_needed:
        prompts = [p for p in prompts if p != Prompt.ENABLE_SOCKET.value]
    if in_use:
        state_words = words.IN_USE
    elif top_up_needed:
        state_words = "Available. Your balance is too low to start: top up first"
    else:
        state_words = words.state_words(status)
    return PlugView(
        plug_id=status.plug_id,
        site_id=status.site_id,
        site_name=site_name,
        state=status.state,
        words=state_words,
        mine=mine,
        in_use=in_use,
        not_responding=not_responding,
        top_up_needed=top_up_needed,
        prompts=prompts,
        power_w=round(status.active_power_w, 1) if mine else 0.0,
        energy_wh=round(status.session_energy_wh, 1) if mine else 0.0,
        cost_cents=status.session_cost_cents if mine else 0,
        price_cents_per_kwh=status.price_cents_per_kwh,
        currency=status.currency or "AUD",
        elapsed_ms=max(0, status.timestamp_ms - status.session_started_ms) if mine else 0,
        queue_text=words.queue_text(status.queue_position, status.queue_eta_min) if mine else "",
    )
