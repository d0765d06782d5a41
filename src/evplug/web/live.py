"""The web's live view: every plug's latest status, followed from the bus's plug-status store.

The web holds no plug. The mothership puts each plug's status into the store as it changes; the
live view loads what is there, then follows every change, and hands each one to the pages that
stream it (SSE). A status that cannot be read is counted and logged, never shown.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from evplug import metrics
from evplug.bus.base import KeyValue, KvEntry, KvWatcher
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts.wire import WireError, unpack

log = structlog.get_logger(__name__)

# Updates a slow page may fall behind by before it misses some (it then reloads the list).
STREAM_BACKLOG = 256


class LiveView:
    def __init__(self, store: KeyValue) -> None:
        self.store = store
        self.statuses: dict[str, pb.PlugStatus] = {}
        self._plug_of_key: dict[str, str] = {}
        self._revisions: dict[str, int] = {}
        self._streams: set[asyncio.Queue[pb.PlugStatus | None]] = set()
        self._watcher: KvWatcher | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load every plug's status, then follow the store's changes in the background."""
        self._watcher = await self.store.watch()
        for key in await self.store.keys():
            entry = await self.store.get(key)
            if entry is not None:
                self._take(entry)
        self._task = asyncio.create_task(self._follow(self._watcher), name="web-live-view")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._watcher is not None:
            await self._watcher.stop()
        for stream in self._streams:
            stream.put_nowait(None)

    def sorted(self) -> list[pb.PlugStatus]:
        return [self.statuses[p] for p in sorted(self.statuses)]

    def stream(self) -> asyncio.Queue[pb.PlugStatus | None]:
        """A queue of every status change from now on; ``None`` means the view stopped."""
        queue: asyncio.Queue[pb.PlugStatus | None] = asyncio.Queue(STREAM_BACKLOG)
        self._streams.add(queue)
        return queue

    def close_stream(self, queue: asyncio.Queue[pb.PlugStatus | None]) -> None:
        self._streams.discard(queue)

    async def _follow(self, watcher: KvWatcher) -> None:
        async for entry in watcher:
            self._take(entry)

    def _take(self, entry: KvEntry) -> None:
        if entry.revision <= self._revisions.get(entry.key, 0):
            return  # seen while loading
        self._revisions[entry.key] = entry.revision
        if entry.deleted:
            plug_id = self._plug_of_key.pop(entry.key, None)
            if plug_id is not None:
                self.statuses.pop(plug_id, None)
            return
        try:
            status = unpack(entry.value, pb.PlugStatus)
        except WireError as exc:
            metrics.MESSAGES_REJECTED.labels("PlugStatus").inc()
            log.warning("web.unreadable_status", key=entry.key, error=str(exc))
            return
        self._plug_of_key[entry.key] = status.plug_id
        self.statuses[status.plug_id] = status
        for stream in self._streams:
            if stream.full():
                stream.get_nowait()  # the oldest goes: the page reloads what it missed
            stream.put_nowait(status)
