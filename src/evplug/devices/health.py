"""Poll health: a device is MIA after N failed polls in a row, and back on its next good read.

Pure bookkeeping for the relay manager's poller. One failed poll is often just Wi-Fi; N in a
row means the device is gone and its plugs should be reported as such. The return values say
when that verdict changes, so the caller emits one event per change instead of one per poll.
"""

from __future__ import annotations

from enum import Enum

DEFAULT_MIA_AFTER = 3


class Change(Enum):
    WENT_MIA = "went_mia"
    RECOVERED = "recovered"


class PollHealth:
    def __init__(self, mia_after: int = DEFAULT_MIA_AFTER) -> None:
        if mia_after < 1:
            raise ValueError("mia_after must be at least 1 failed poll")
        self.mia_after = mia_after
        self._failures: dict[str, int] = {}
        self._last_error: dict[str, str] = {}

    def failures(self, device: str) -> int:
        """Consecutive failed polls of ``device`` up to now (0 after a good read)."""
        return self._failures.get(device, 0)

    def is_mia(self, device: str) -> bool:
        return self.failures(device) >= self.mia_after

    def last_error(self, device: str) -> str | None:
        """Why the latest poll of a failing device failed; None once it reads again."""
        return self._last_error.get(device)

    def failed(self, device: str, error: str = "") -> Change | None:
        self._failures[device] = self.failures(device) + 1
        self._last_error[device] = error
        return Change.WENT_MIA if self._failures[device] == self.mia_after else None

    def succeeded(self, device: str) -> Change | None:
        was_mia = self.is_mia(device)
        self.forget(device)
        return Change.RECOVERED if was_mia else None

    def forget(self, device: str) -> None:
        """Clear the count: after a good read, or when a device leaves the site config."""
        self._failures.pop(device, None)
        self._last_error.pop(device, None)
