"""A handler that records what it is given, acking it unless told not to."""

from __future__ import annotations

from evplug.bus.base import Message


class Inbox:
    def __init__(self, ack: bool = True) -> None:
        self.messages: list[Message] = []
        self.ack = ack

    async def __call__(self, msg: Message) -> None:
        self.messages.append(msg)
        if self.ack:
            await msg.ack()

    @property
    def data(self) -> list[bytes]:
        return [m.data for m in self.messages]
