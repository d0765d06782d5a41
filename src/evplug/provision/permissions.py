"""Who may publish and subscribe to what: one function per kind of user, enforced by the broker.

Every user's replies come to its own inboxes, ``_INBOX.<its public key>.>``, and it may
subscribe to nothing else of the kind: a site that could subscribe to ``_INBOX.>`` would read the
commands the broker delivers to every other site's pull requests.

A site's relay manager publishes its readings, command results and announcements to JetStream
(the acks come back on its inbox: publishing needs no JetStream API at all), and takes its
commands and announcement acks through two durable pull consumers whose names and filters are
fixed here: it may create each only with its own subject as the filter (the filter is part of the
API subject, which the broker checks against the request), ask it for messages and ack them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evplug.contracts import subjects

JS_API = "$JS.API"


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    # May answer requests (one reply each) on the requester's inbox.
    responds: bool = False

    def claims(self) -> dict[str, Any]:
        """The ``nats`` part of a user JWT that carries these permissions."""
        claims: dict[str, Any] = {
            "pub": {"allow": list(self.publish)},
            "sub": {"allow": list(self.subscribe)},
            "subs": -1,
            "data": -1,
            "payload": -1,
        }
        if self.responds:
            claims["resp"] = {"max": 1, "ttl": 0}
        return claims


def inbox_prefix(user_public_key: str) -> str:
    """The prefix of a user's reply subjects; its client must be told to use it."""
    return f"_INBOX.{user_public_key}"


def stream_of(family: str) -> str:
    """The JetStream stream of a subject family (as ``evplug.bus.nats.family_stream`` names it)."""
    return family.upper()


def _consumer(family: str, site_id: str) -> tuple[str, ...]:
    stream, durable = stream_of(family), subjects.relay_durable(family, site_id)
    consumer = f"{JS_API}.CONSUMER"
    return (
        f"{consumer}.INFO.{stream}.{durable}",
        f"{consumer}.CREATE.{stream}.{durable}.{subjects.for_site(family, site_id)}",
        f"{consumer}.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    )


def site(site_id: str, user_public_key: str) -> Permissions:
    """A site's relay manager: its own telemetry, results and announcements out; its commands in."""
    own = (subjects.TELEMETRY, subjects.RESPONSES, subjects.ANNOUNCE)
    return Permissions(
        publish=(
            *(subjects.for_site(family, site_id) for family in own),
            *_consumer(subjects.COMMANDS, site_id),
            *_consumer(subjects.ANNOUNCE_ACK, site_id),
        ),
        subscribe=(f"{inbox_prefix(user_public_key)}.>",),
    )


def mothership(user_public_key: str) -> Permissions:
    """The mothership owns JetStream (streams, consumers, the status bucket) and commands sites."""
    return Permissions(
        publish=(
            subjects.all_sites(subjects.COMMANDS),
            subjects.all_sites(subjects.ANNOUNCE_ACK),
            subjects.BALANCE_CHANGED,
            f"{JS_API}.>",
            "$JS.ACK.>",
            "$JS.FC.>",
            f"$KV.{subjects.PLUG_STATUS_BUCKET}.>",
        ),
        subscribe=(subjects.all_sites(subjects.DRIVER), f"{inbox_prefix(user_public_key)}.>"),
        responds=True,
    )


def web(user_public_key: str) -> Permissions:
    """The web asks the mothership, reads and watches the status bucket, reports balance changes."""
    stream = f"KV_{subjects.PLUG_STATUS_BUCKET}"
    return Permissions(
        publish=(
            subjects.all_sites(subjects.DRIVER),
            subjects.BALANCE_CHANGED,
            f"{JS_API}.STREAM.INFO.{stream}",
            f"{JS_API}.STREAM.MSG.GET.{stream}",
            f"{JS_API}.DIRECT.GET.{stream}.>",
            f"{JS_API}.CONSUMER.CREATE.{stream}",  # a watcher's consumer: ephemeral, unnamed
            f"{JS_API}.CONSUMER.CREATE.{stream}.>",
            f"{JS_API}.CONSUMER.DELETE.{stream}.>",
            f"{JS_API}.CONSUMER.INFO.{stream}.>",
            f"$JS.FC.{stream}.>",
        ),
        subscribe=(f"{inbox_prefix(user_public_key)}.>",),
    )


def everything() -> Permissions:
    """The account's administrator (the one-process demo, tests, setting up streams) and the
    system account's user (pushes account updates to the broker)."""
    return Permissions(publish=(">",), subscribe=(">",))
