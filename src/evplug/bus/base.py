"""The bus interface every transport implements, with the semantics NATS gives.

Streams (JetStream): publishing with a message id is idempotent within the dedupe window; a
durable subscription survives its subscriber and resumes where it left off; a message is
redelivered until it is acked, ``ack_wait_s`` after each delivery.

Request/reply (core NATS): a request goes to every server of its subject, or to one member of
each queue group; the first reply wins. Nothing is stored: with nobody serving the subject the
request fails at once.

Key-value (JetStream KV): a bucket holds the latest value of each key; watchers get the current
values, then every change.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class BusError(RuntimeError):
    """The transport cannot take the message (broker unreachable, stream full...)."""


class BusRefused(BusError):
    """The broker will not take this client (credentials wrong, revoked or expired): retrying
    cannot help; the message says why and what to do."""


class NoResponders(BusError):
    """Nobody serves the subject (NATS answers this at once)."""


class RequestTimeout(BusError):
    """No reply within the timeout."""


class Message(Protocol):
    subject: str
    data: bytes
    msg_id: str
    deliveries: int

    async def ack(self) -> None: ...

    async def nak(self) -> None:
        """Ask for redelivery now rather than after the ack timeout."""
        ...


Handler = Callable[[Message], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None:
        """Stop delivering; unacked messages stay with the durable for the next subscriber."""
        ...


Responder = Callable[[str, bytes], Awaitable[bytes]]  # (subject, request data) -> reply data


@dataclass(frozen=True, slots=True)
class KvEntry:
    key: str
    value: bytes  # b"" when deleted
    revision: int  # per bucket, strictly increasing, starts at 1
    deleted: bool = False


class KvWatcher(Protocol):
    def __aiter__(self) -> AsyncIterator[KvEntry]: ...

    async def stop(self) -> None:
        """Deliver nothing more: an ``async for`` over the watcher ends."""
        ...


class KeyValue(Protocol):
    """One bucket; it keeps only the latest value of each key."""

    async def put(self, key: str, value: bytes) -> int:
        """Store ``value`` under ``key``; returns the new revision."""
        ...

    async def get(self, key: str) -> KvEntry | None:
        """The latest entry; None if the key is absent or deleted."""
        ...

    async def delete(self, key: str) -> None: ...

    async def keys(self) -> list[str]:
        """The live keys, sorted."""
        ...

    async def watch(self, pattern: str = ">") -> KvWatcher:
        """The latest entry of every live matching key first (in revision order), then every
        later put or delete of a matching key, in order. ``pattern`` uses subject wildcards over
        the dot-separated key (``site-1.>``, ``*.x``)."""
        ...


Outgoing = tuple[str, bytes, str]  # (subject, data, msg_id) of a message to publish


class Bus(Protocol):
    async def publish(self, subject: str, data: bytes, msg_id: str = "") -> bool:
        """Store the message; False when ``msg_id`` was already published (a duplicate)."""
        ...

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[bool | BaseException]:
        """Publish every message, all in flight at once and stored in this order.

        For each, in order: what ``publish`` returns, or the error it would have raised (a
        ``BusError`` when the broker refused it or did not answer in time).
        """
        ...

    async def subscribe(
        self,
        subject: str,
        durable: str,
        handler: Handler,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1000,
    ) -> Subscription: ...

    async def request(self, subject: str, data: bytes, timeout_s: float = 5.0) -> bytes:
        """The first reply; raises NoResponders or RequestTimeout (both BusError)."""
        ...

    async def serve(self, subject: str, responder: Responder, queue: str = "") -> Subscription:
        """Answer requests on ``subject`` (wildcards allowed) with ``responder``.

        With a ``queue`` name, each request goes to ONE member of that queue group. A responder
        that raises gives the requester no reply (it times out, as in NATS); the error is logged.
        ``stop()`` serves no new request and answers those already taken (a NATS drain).
        """
        ...

    async def key_value(self, bucket: str) -> KeyValue:
        """The bucket, created if missing."""
        ...

    async def close(self) -> None: ...


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` is one or more."""
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for i, p in enumerate(p_tokens):
        if p == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (p != "*" and p != s_tokens[i]):
            return False
    return len(p_tokens) == len(s_tokens)


# NATS's own rules (nats-py ``VALID_KEY_RE``, ``VALID_BUCKET_RE``), checked before any I/O so a
# bad name fails the same way on every transport, in tests rather than in production.
_KEY_TOKEN = re.compile(r"[-/_=A-Za-z0-9]+")
_BUCKET = re.compile(r"[A-Za-z0-9_-]+")
_KEY_RULE = (
    "a key is dot-separated tokens of letters, digits and - / _ =, "
    "with no leading, trailing or double dot"
)
_BUCKET_RULE = "a bucket name is letters, digits, - and _ only"


def check_key(key: str) -> str:
    """``key`` if NATS accepts it as a KV key, else ValueError naming the key and the rule."""
    if not all(_KEY_TOKEN.fullmatch(token) for token in key.split(".")):
        raise ValueError(f"invalid key {key!r}: {_KEY_RULE}")
    return key


def check_key_pattern(pattern: str) -> str:
    """A key pattern for ``watch``: a key whose tokens may also be ``*``, or ``>`` at the end."""
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        wildcard = token == "*" or (token == ">" and i == len(tokens) - 1)
        if not wildcard and not _KEY_TOKEN.fullmatch(token):
            raise ValueError(
                f"invalid key pattern {pattern!r}: {_KEY_RULE}; "
                "a token may also be * (any one token) or a final > (one or more)"
            )
    return pattern


def check_bucket(bucket: str) -> str:
    """``bucket`` if NATS accepts it as a KV bucket name, else ValueError naming it and the rule."""
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"invalid bucket {bucket!r}: {_BUCKET_RULE}")
    return bucket
