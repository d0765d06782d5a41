"""What the HTTP relay drivers share: one aiohttp session per device, errors mapped to ``base``.

Each family module only speaks its device's dialect; how a refused connection, a timeout, a 401
or a body of the wrong shape turns into a ``DeviceError`` is decided here, once.

One connection per device, kept open between polls where the device allows it: a device that
answers ``Connection: close`` (Shelly Gen2+) gets a new one per request, and families that must
not hold the device's only connection (Sonoff DIY) opt out with ``keep_alive=False``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from evplug.devices.base import (
    ActualState,
    BadChannel,
    ChannelReading,
    DeviceAuthError,
    DeviceInfo,
    DeviceUnreachable,
    SwitchMismatch,
    UnsupportedDevice,
)

# Room for a slow Wi-Fi round trip plus a digest challenge, yet a dead device is declared MIA
# (after a few failed polls) within seconds.
DEFAULT_TIMEOUT_S = 3.0
# Below the idle timeout of small device web servers, so an idle connection is rarely reused
# just as the device drops it (and when it is, the request is sent once more on a new one).
KEEPALIVE_S = 5.0


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def normalize_url(url: str) -> str:
    """One spelling per device: ``192.168.1.5``, ``HTTP://192.168.1.5:80/`` ->
    ``http://192.168.1.5`` (scheme and host are case-blind, the default port is implied)."""
    scheme, sep, rest = url.strip().rstrip("/").partition("://")
    if not sep:
        scheme, rest = "http", scheme
    scheme = scheme.lower()
    netloc, slash, path = rest.partition("/")
    user, at, host = netloc.rpartition("@")
    host = host.lower()
    if scheme in _DEFAULT_PORTS:
        host = host.removesuffix(_DEFAULT_PORTS[scheme])
    return f"{scheme}://{user}{at}{host}{slash}{path}"


def mac_hex(mac: str) -> str:
    """A MAC in any common spelling as the hardware id: lowercase hex, no separators."""
    return mac.replace(":", "").replace("-", "").lower()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    data: Any  # the parsed JSON body, None when the body is empty or not JSON
    where: str

    def object(self) -> dict[str, Any]:
        if not isinstance(self.data, dict):
            raise UnsupportedDevice(f"{self.where}: HTTP {self.status}, not a JSON object")
        return self.data


@contextmanager
def expect_shape(where: str) -> Iterator[None]:
    """A reply that parses as JSON but lacks what we index into is an unsupported device."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise UnsupportedDevice(f"{where}: unexpected reply shape ({exc!r})") from exc


class DeviceHttp:
    """One device's HTTP endpoint. Never lets an aiohttp or OS exception escape."""

    def __init__(
        self,
        url: str,
        timeout_s: float,
        *,
        basic_auth: tuple[str, str] | None = None,
        digest: tuple[str, str] | None = None,
        min_gap_s: float = 0.0,
        keep_alive: bool = True,
    ) -> None:
        """``basic_auth``/``digest``: (user, password) for HTTP basic or digest auth.
        ``keep_alive``: reuse the connection between requests when the device allows it."""
        self.base_url = normalize_url(url)
        self.timeout_s = timeout_s
        self.has_credentials = basic_auth is not None or digest is not None
        self._headers: dict[str, str] = {}
        if basic_auth is not None:
            token = base64.b64encode(":".join(basic_auth).encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._digest = digest
        self._min_gap_s = min_gap_s
        self._keep_alive = keep_alive
        self.retried = 0  # requests sent again after the device closed a reused connection
        self._last_request = -float("inf")
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use so it belongs to the running loop, not the one that built the driver.
        if self._session is None:
            middlewares = (aiohttp.DigestAuthMiddleware(*self._digest),) if self._digest else ()
            self._session = aiohttp.ClientSession(
                # Some small device web servers serve one connection at a time.
                connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=KEEPALIVE_S)
                if self._keep_alive
                else aiohttp.TCPConnector(limit=1, force_close=True),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers=self._headers,
                middlewares=middlewares,
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
        what: str | None = None,
    ) -> Reply:
        """``what`` names the request in errors (the query string may carry a password)."""
        where = f"{self.base_url}{what or path}"
        wait = self._last_request + self._min_gap_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            try:
                status, text = await self._send(method, path, params, json_body)
            except aiohttp.ServerDisconnectedError:
                if not self._keep_alive:
                    raise
                # The device closed the idle connection as the request went out: nothing was
                # answered, so nothing was done; the retry opens a new connection.
                self.retried += 1
                status, text = await self._send(method, path, params, json_body)
        except TimeoutError as exc:
            raise DeviceUnreachable(f"{where}: no answer within {self.timeout_s:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error)
            raise DeviceUnreachable(f"{where}: cannot connect ({reason})") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise DeviceUnreachable(f"{where}: {type(exc).__name__}: {exc}") from exc
        finally:
            self._last_request = time.monotonic()
        if status == 401:
            raise DeviceAuthError(
                f"{where}: the device rejected the configured credentials"
                if self.has_credentials
                else f"{where}: the device requires a password"
            )
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        return Reply(status, data, where)

    async def _send(
        self, method: str, path: str, params: Mapping[str, str] | None, json_body: object
    ) -> tuple[int, str]:
        async with self._open().request(
            method, f"{self.base_url}{path}", params=params, json=json_body
        ) as response:
            return response.status, await response.text(errors="replace")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def confirm_switch(where: str, channel: int, on: bool, actual: ActualState) -> ActualState:
    """The state read back after a switch. A protection trip is an answer, not a mismatch."""
    if actual not in (ActualState.OVERCURRENT, ActualState.ON if on else ActualState.OFF):
        raise SwitchMismatch(
            f"{where}: channel {channel} reads {actual.name}"
            f" after switching {'on' if on else 'off'}"
        )
    return actual


class HttpDriver:
    """Constructor, ``switch`` (set + read back) and ``close`` for every HTTP family.

    Families whose device has an auto-off timer add ``switch_on_for`` (``TimedDriver``).

    Subclasses implement ``connect``, ``read``, ``_set`` and ``_state``; ``switch`` never trusts
    the set command's own reply, it asks the device again.
    """

    name: ClassVar[str]  # registry key, e.g. "shelly_rpc"
    tried: ClassVar[str]  # what probing this family asks, for "nothing answers" errors

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.username = username
        self.password = password
        self.http = self._make_http(normalize_url(url), timeout_s)

    def _make_http(self, url: str, timeout_s: float) -> DeviceHttp:
        return DeviceHttp(url, timeout_s)

    @property
    def url(self) -> str:
        return self.http.base_url

    async def connect(self) -> DeviceInfo:
        raise NotImplementedError

    async def read(self) -> list[ChannelReading]:
        raise NotImplementedError

    async def _set(self, channel: int, on: bool) -> None:
        raise NotImplementedError

    async def _state(self, channel: int) -> ActualState:
        raise NotImplementedError

    async def switch(self, channel: int, on: bool) -> ActualState:
        return await self._switched(channel, on, lambda: self._set(channel, on))

    async def _switched(
        self, channel: int, on: bool, command: Callable[[], Awaitable[object]]
    ) -> ActualState:
        """Send ``command`` (it switches ``channel`` to ``on``), then read the channel back."""
        if channel < 0:
            # Some dialects read a negative or zero index as "all outputs"; never send one.
            raise BadChannel(f"{self.url}: no channel {channel}")
        await command()
        return confirm_switch(self.url, channel, on, await self._state(channel))

    async def close(self) -> None:
        await self.http.close()
