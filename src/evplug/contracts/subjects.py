"""Bus subjects, one family per message flow, each scoped to a site.

A site's credentials are later scoped to exactly these subjects, so keep every flow here.
"""

from __future__ import annotations

from evplug.core.ids import check_site_id

TELEMETRY = "telemetry"  # relay -> mothership: ReadingChunk
COMMANDS = "commands"  # mothership -> relay: LocalStateRequest
RESPONSES = "responses"  # relay -> mothership: LocalStateResponse
ANNOUNCE = "announce"  # relay -> mothership: DeviceAnnouncement
ANNOUNCE_ACK = "announce_ack"  # mothership -> relay: DeviceAnnouncementAck
DRIVER = "driver"  # web -> mothership, request/reply: DriverRequest -> DriverReply
BALANCE = "balance"  # ledger writers -> mothership: BalanceChanged (not per site)
BALANCE_CHANGED = f"{BALANCE}.changed"

# The last-value store of every plug's PlugStatus, keyed by ``status_key``.
PLUG_STATUS_BUCKET = "plug_status"


def for_site(flow: str, site_id: str) -> str:
    """The subject of one flow for one site, e.g. ``telemetry.garage-1``."""
    return f"{flow}.{check_site_id(site_id)}"


def all_sites(flow: str) -> str:
    """The wildcard subject matching one flow for every site."""
    return f"{flow}.*"


def site_of(subject: str) -> str:
    """The site id a subject belongs to."""
    _, _, site = subject.partition(".")
    return site


def status_key(site_id: str, plug_id: str) -> str:
    """A plug's key in the status store: ``<site>.<plug id's parts>``, so a site can be watched.

    Store keys allow no ``:``; plug ids have no ``.``, so the mapping is one to one.
    """
    return f"{site_id}.{plug_id.replace(':', '.')}"


def relay_durable(flow: str, site_id: str) -> str:
    """The durable consumer a site's relay manager takes one flow through, e.g.
    ``relay-garage-1-commands``; the site's credentials name it, so it cannot change freely."""
    return f"relay-{check_site_id(site_id)}-{flow.replace('_', '-')}"
