"""The embedded key-value bucket: the latest value of each key, as JetStream KV with history 1.

Every put and delete takes the bucket's next revision; watchers get the live entries they
match, then each change, in revision order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from evplug.bus.base import KvEntry, check_key, check_key_pattern, subject_matches


class MemoryKeyValue:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._latest: dict[str, KvEntry] = {}  # live keys only: history 1 keeps nothing else
        self._revision = 0
        self._watchers: list[MemoryWatcher] = []

    async def put(self, key: str, value: bytes) -> int:
        if not isinstance(value, bytes):
            raise TypeError(f"value for {key!r} is {type(value).__name__}: encode it to bytes")
        return self._record(KvEntry(check_key(key), value, self._revision + 1))

    async def get(self, key: str) -> KvEntry | None:
        return self._latest.get(check_key(key))

    async def delete(self, key: str) -> None:
        # NATS writes a delete marker even for an absent key; watchers see it all the same.
        self._record(KvEntry(check_key(key), b"", self._revision + 1, deleted=True))

    async def keys(self) -> list[str]:
        return sorted(self._latest)

    async def watch(self, pattern: str = ">") -> MemoryWatcher:
        check_key_pattern(pattern)
        current = sorted(self._latest.values(), key=lambda entry: entry.revision)
        watcher = MemoryWatcher(self._watchers, pattern, current)
        self._watchers.append(watcher)
        return watcher

    def _record(self, entry: KvEntry) -> int:
        self._revision = entry.revision
        if entry.deleted:
            self._latest.pop(entry.key, None)
        else:
            self._latest[entry.key] = entry
        for watcher in self._watchers:
            watcher.offer(entry)
        return entry.revision


class MemoryWatcher:
    def __init__(self, watchers: list[MemoryWatcher], pattern: str, current: list[KvEntry]) -> None:
        self._watchers = watchers
        self._pattern = pattern
        self._entries: deque[KvEntry] = deque()
        self._ready = asyncio.Event()
        self._stopped = False
        for entry in current:
            self.offer(entry)

    def offer(self, entry: KvEntry) -> None:
        if subject_matches(self._pattern, entry.key):
            self._entries.append(entry)
            self._ready.set()

    async def __aiter__(self) -> AsyncIterator[KvEntry]:
        while not self._stopped:
            if self._entries:
                yield self._entries.popleft()
            else:
                self._ready.clear()
                await self._ready.wait()

    async def stop(self) -> None:
        self._stopped = True
        if self in self._watchers:
            self._watchers.remove(self)
        self._ready.set()
