"""The bus interface every transport implements, with JetStream's delivery semantics.

Publishing with a message id is idempotent within the dedupe window; a durable subscription
survives its subscriber and resumes where it left off; a message is redelivered until it is
acked, ``ack_wait_s`` after each delivery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class BusError(RuntimeError):
    """The transport cannot take the message (broker unreachable, stream full...)."""


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


class Bus(Protocol):
    async def publish(self, subject: str, data: bytes, msg_id: str = "") -> bool:
        """Store the message; False when ``msg_id`` was already published (a duplicate)."""
        ...

    async def subscribe(
        self,
        subject: str,
        durable: str,
        handler: Handler,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1000,
    ) -> Subscription: ...

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
