"""The whole system served over real HTTP on loopback, as ``evplug demo`` serves it, and a real
SMTP server beside it to catch what the app mails: for browsers and event streams."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI

from evplug.bus.broker import free_port
from tests.conftest import wait_for


class Inbox:
    """An aiosmtpd handler keeping every message delivered to it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on a free loopback port; its inbox and port."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@asynccontextmanager
async def serve(app: FastAPI, port: int, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """``app`` served by uvicorn on ``port`` of loopback (its lifespan run); the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or serving.done())
        if serving.done():
            serving.result()  # raises what stopped it
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await serving
