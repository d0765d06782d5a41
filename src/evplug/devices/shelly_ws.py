"""One Shelly Gen2+ device's WebSocket (``ws://<ip>/rpc``): request frames answered on it, digest
auth inside the frames, notifications handed on as they arrive (reference §1.3, §1.7, §1.8).

The socket is kept open for as long as its owner wants it: a refused upgrade or a drop is retried
with a doubling delay, and ``ready`` tells the owner when to fall back to plain HTTP meanwhile.
It only carries frames; what a frame means is the driver's business.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from evplug.devices.base import DeviceAuthError, DeviceError, DeviceUnreachable

log = structlog.get_logger(__name__)

RECONNECT_S = (1.0, 30.0)  # first delay after a failure, doubling up to the last
HEARTBEAT_S = 55.0  # as Home Assistant's client: a silently dead peer is noticed in a minute
AUTH_REQUIRED = 401
# Frame auth hashes a fixed HA2 (reference §1.7): a frame has no HTTP method or URI.
FRAME_HA2 = hashlib.sha256(b"dummy_method:dummy_uri").hexdigest()

OnNotification = Callable[[str, Any], None]  # (method, params)


class SocketClosed(DeviceUnreachable):
    """The socket is not open (or closed under the call): the device itself may be fine."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class FrameAuth:
    """The device's last challenge; each signed frame counts ``nc`` up on the same nonce."""

    realm: str
    ha1: str
    nonce: Any  # a number on Gen2+, echoed as sent
    nc: int

    @classmethod
    def from_challenge(cls, message: str, user: str, password: str) -> FrameAuth:
        """The 401 error's message: a JSON challenge (nonce, nc, realm, algorithm)."""
        try:
            challenge = json.loads(message)
            realm, nonce = str(challenge["realm"]), challenge["nonce"]
            algorithm, nc = challenge.get("algorithm", "SHA-256"), int(challenge.get("nc", 1))
        except (ValueError, KeyError, TypeError) as exc:
            raise DeviceAuthError(f"not a digest challenge: {message!r}") from exc
        if algorithm != "SHA-256":
            raise DeviceAuthError(f"the device offers {algorithm} auth; only SHA-256 is known")
        return cls(realm, sha256_hex(f"{user}:{realm}:{password}"), nonce, nc)

    def sign(self, user: str) -> dict[str, Any]:
        cnonce = base64.b64encode(secrets.token_bytes(12)).decode()
        response = sha256_hex(f"{self.ha1}:{self.nonce}:{self.nc}:{cnonce}:auth:{FRAME_HA2}")
        auth = {
            "realm": self.realm,
            "username": user,
            "nonce": self.nonce,
            "cnonce": cnonce,
            "nc": self.nc,
            "algorithm": "SHA-256",
            "response": response,
        }
        self.nc += 1
        return auth


def is_auth_error(frame: dict[str, Any]) -> bool:
    error = frame.get("error")
    return isinstance(error, dict) and error.get("code") == AUTH_REQUIRED


class RpcSocket:
    """``call`` sends a frame and returns the response frame; notifications go to
    ``on_notification``; ``on_open`` runs after every (re)connect, before ``ready``."""

    def __init__(
        self,
        url: str,
        *,
        src: str,
        user: str,
        password: str | None,
        timeout_s: float,
        on_open: Callable[[], Awaitable[None]],
        on_notification: OnNotification,
    ) -> None:
        self.url = f"{url}/rpc"
        self.src = src
        self.timeout_s = timeout_s
        self._user, self._password = user, password
        self._on_open, self._on_notification = on_open, on_notification
        self._auth: FrameAuth | None = None
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.ready = False  # open, and ``on_open`` has succeeded
        self.opened = 0  # how many times it came up
        self.bad_frames = 0  # frames that were not JSON objects or answered nothing asked

    def start(self) -> None:
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_open(), name=f"ws {self.url}")

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def drop(self) -> None:
        """Close the socket (it stopped answering); the keeper reconnects after a delay."""
        if self._ws is not None and not self._ws.closed:
            # Closing waits for the peer's close frame: never make the caller wait for that.
            task = asyncio.get_running_loop().create_task(self._close(self._ws))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self.ready = False

    @staticmethod
    async def _close(ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.close()

    async def _keep_open(self) -> None:
        delay = RECONNECT_S[0]
        while True:
            try:
                await self._run_once()
                delay = RECONNECT_S[0]
                log.info("shelly.ws_closed", url=self.url, fallback="HTTP polling")
            except DeviceError as exc:
                log.warning("shelly.ws_unavailable", url=self.url, error=str(exc), retry_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])

    async def _run_once(self) -> None:
        """Connect, run ``on_open``, then read frames until the socket closes."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(self.timeout_s):
                ws = await self._session.ws_connect(self.url, heartbeat=HEARTBEAT_S)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeviceUnreachable(
                f"{self.url}: no WebSocket ({type(exc).__name__}: {exc})"
            ) from exc
        self._ws = ws
        receiver = asyncio.create_task(self._receive(ws))
        try:
            await self._on_open()
            self.ready = True
            self.opened += 1
            await receiver
        finally:
            self.ready = False
            self._ws = None
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
            await ws.close()
            for future in self._calls.values():
                if not future.done():
                    future.set_exception(SocketClosed(f"{self.url}: WebSocket closed"))
            self._calls.clear()

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(message.data)
            except ValueError:
                frame = None
            if not isinstance(frame, dict):
                self._bad_frame("not a JSON object", message.data)
            elif "id" not in frame and isinstance(frame.get("method"), str):
                self._on_notification(frame["method"], frame.get("params"))
            elif (future := self._calls.pop(frame["id"], None)) is not None:
                if not future.done():
                    future.set_result(frame)
            else:
                self._bad_frame("a response to nothing asked", message.data)

    def _bad_frame(self, why: str, data: object) -> None:
        self.bad_frames += 1
        log.warning("shelly.ws_bad_frame", url=self.url, why=why, frame=str(data)[:200])

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The response frame. A 401 is answered once with the challenge it carries (a nonce the
        device forgot is one such 401); a second 401 is returned for the caller to report."""
        frame = await self._send(method, params)
        if is_auth_error(frame) and self._password is not None:
            self._auth = FrameAuth.from_challenge(
                str(frame["error"].get("message", "")), self._user, self._password
            )
            frame = await self._send(method, params)
        return frame

    async def _send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        ws = self._ws
        if ws is None or ws.closed:
            raise SocketClosed(f"{self.url}: WebSocket not open")
        frame_id = next(self._ids)
        request: dict[str, Any] = {"id": frame_id, "src": self.src, "method": method}
        if params:
            request["params"] = params
        if self._auth is not None:
            request["auth"] = self._auth.sign(self._user)
        future = self._calls[frame_id] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.timeout_s):
                await ws.send_json(request)
                return await future
        except TimeoutError as exc:
            self.drop()
            raise DeviceUnreachable(
                f"{self.url} {method}: no answer within {self.timeout_s:g} s"
            ) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise SocketClosed(f"{self.url} {method}: {type(exc).__name__}: {exc}") from exc
        finally:
            self._calls.pop(frame_id, None)
