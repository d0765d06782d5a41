"""What a driver reads: a plug's state, a session's end, money and time, in plain words.

Pure functions of the plug status and records, so the pages, the JSON API and the tests agree
on every sentence.
"""

from __future__ import annotations

from evplug.contracts import evplug_pb2 as pb

# Each state as the driver at the socket reads it; IN_QUEUE reads its place instead.
STATE_WORDS: dict[str, str] = {
    "INITIALISING": "Starting up: waiting for the socket's first reading",
    "ACCOUNT_NULL": "Available",
    "ACCOUNT_ADDED": "Starting your session",
    "ENTERING_QUEUE": "Checking your balance",
    "IN_QUEUE": "In queue",
    "SENSING_START_REQUESTED": "Switching the socket on",
    "SENSING_START_ISSUED_LOCALLY": "Switching the socket on",
    "SENSING_START_NOT_RESPONDING": "Not responding — try again",
    "SENSING_CHARGE": "Waiting for your car to draw power",
    "WAITING_FOR_PLUG_IN": "Waiting for your car to draw power: is it plugged in?",
    "CHARGING": "Charging",
    "INSUFFICIENT_CREDIT": "Stopping: your balance ran out",
    "CHARGE_COMPLETE": "Charge complete: switching off",
    "LIMITING": "Paused: the circuit is shared with other cars",
    "ACCOUNT_REMOVAL_REQUESTED": "Switching the socket off",
    "ACCOUNT_REMOVAL_ISSUED_LOCALLY": "Switching the socket off",
    "ACCOUNT_REMOVAL_NOT_RESPONDING": "Not responding — try again",
    "COMMISSIONING": "Being set up by a technician",
}

# Why a session ended (core.plug.EndReason values), as its driver is told.
END_WORDS: dict[str, str] = {
    "driver": "Stopped by you",
    "complete": "Charge complete",
    "insufficient_credit": "Stopped: your balance ran out",
    "no_car": "Stopped: no car drew power",
    "tripped": "Stopped: the socket tripped",
    "relay_not_responding": "Stopped: the socket did not respond",
    "relay_switched_off": "Stopped: the socket was switched off at the socket",
    "unsupervised_too_long": "Stopped: the socket lost touch with the server, for safety",
}

RELAY_NOT_RESPONDING = "Not responding: the socket is offline, try again in a minute"
TRIPPED = "Stopped: the socket tripped"
IN_USE = "In use"


def ordinal(n: int) -> str:
    if n % 100 in (11, 12, 13):
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def queue_text(position: int, eta_min: int) -> str:
    """What a waiting driver reads, e.g. "In queue: 2nd, about 25 min"; "" when not queued."""
    if position <= 0:
        return ""
    if eta_min < 0:
        when = "this socket's circuit cannot take this car: ask the site's operator"
    elif eta_min == 0:
        when = "starting in a moment"
    else:
        when = f"about {eta_min} min"
    return f"In queue: {ordinal(position)}, {when}"


def state_words(status: pb.PlugStatus) -> str:
    """The plug's state as a sentence, for the driver whose plug it is (or an idle plug)."""
    if status.actual_state == pb.ACTUAL_STATE_MIA:
        return RELAY_NOT_RESPONDING
    if status.actual_state == pb.ACTUAL_STATE_OVERCURRENT:
        return TRIPPED
    if status.state == "IN_QUEUE" and status.queue_position > 0:
        return queue_text(status.queue_position, status.queue_eta_min)
    if status.state == "ACCOUNT_NULL" and status.last_end_reason:
        ended = END_WORDS.get(status.last_end_reason, status.last_end_reason)
        return f"Available. Last session: {ended}"
    return STATE_WORDS.get(status.state, status.state.replace("_", " ").capitalize())


def end_words(reason: str) -> str:
    return END_WORDS.get(reason, reason or "")


def decimal(cents: int, grouping: str = "") -> str:
    """Integer cents as a plain decimal, ``1234.05`` (``1,234.05`` with ``grouping=","``)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole:{grouping}}.{part:02d}"


def money(cents: int, currency: str = "AUD") -> str:
    """Integer cents as a driver reads them: ``$12.05``, ``-$0.40``; never through a float."""
    amount = decimal(abs(cents), ",")
    sign = "-" if cents < 0 else ""
    if currency.upper() in ("AUD", "USD", "NZD", "CAD", "SGD", "HKD", ""):
        return f"{sign}${amount}"
    return f"{sign}{amount} {currency.upper()}"


def duration(ms: int) -> str:
    """A span of time: ``45 s``, ``12 min``, ``1 h 05 min``."""
    seconds = max(0, ms) // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def kwh(energy_wh: float) -> str:
    return f"{energy_wh / 1000:.3f} kWh"


def kw(power_w: float) -> str:
    return f"{power_w / 1000:.2f} kW"
