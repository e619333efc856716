"""The in-process Limiter: concurrency slots and sliding windows in dicts, for one process.

Thread-safe (one lock; every operation is a few dict/deque steps). Slots expire on their own,
like the Redis backend's, so a holder that never releases frees its slot after `ttl`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

# Operations between two sweeps of idle keys (keeps the sweep's cost amortised O(1)).
_SWEEP_EVERY = 1024
# The smallest wait `hit()` answers when denied, so a denial is never mistaken for 0.0.
_MIN_WAIT = 0.001


@dataclass(eq=False)
class _Window:
    seconds: float
    stamps: deque[float] = field(default_factory=deque)


class MemoryLimiter:
    """Limiter for one process; slots and windows use the monotonic clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, dict[str, float]] = {}  # key -> holder -> expires_at
        self._windows: dict[str, _Window] = {}
        self._operations = 0

    async def acquire(self, key: str, *, limit: int, ttl: float, holder: str) -> bool:
        """Take a slot for `ttl` seconds (a holder re-acquiring renews its own); False if full."""
        with self._lock:
            now = time.monotonic()
            self._tick(now)
            holders = self._slots.setdefault(key, {})
            for expired in [h for h, expires_at in holders.items() if expires_at <= now]:
                del holders[expired]
            if holder not in holders and len(holders) >= limit:
                return False
            holders[holder] = now + ttl
            return True

    async def renew(self, key: str, *, holder: str, ttl: float) -> None:
        with self._lock:
            self._slots.setdefault(key, {})[holder] = time.monotonic() + ttl

    async def free_in(self, key: str) -> float:
        with self._lock:
            holders = self._slots.get(key)
            if not holders:
                return 0.0
            return max(0.0, min(holders.values()) - time.monotonic())

    async def release(self, key: str, holder: str) -> None:
        """Give the holder's slot back (no-op when it holds none)."""
        with self._lock:
            holders = self._slots.get(key)
            if holders is not None:
                holders.pop(holder, None)
                if not holders:
                    del self._slots[key]

    async def hit(self, key: str, *, limit: int, window: float) -> float:
        """Count a request; 0.0 when within `limit` per `window`, else seconds to wait."""
        with self._lock:
            now = time.monotonic()
            self._tick(now)
            entry = self._windows.get(key)
            if entry is None:
                entry = self._windows[key] = _Window(window)
            entry.seconds = window
            stamps = entry.stamps
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            if len(stamps) < limit:
                stamps.append(now)
                return 0.0
            if limit <= 0:
                return window
            # Allowed again once enough of the oldest requests leave the window.
            return max(stamps[len(stamps) - limit] + window - now, _MIN_WAIT)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _tick(self, now: float) -> None:
        self._operations += 1
        if self._operations % _SWEEP_EVERY:
            return
        for key in [k for k, h in self._slots.items() if all(e <= now for e in h.values())]:
            del self._slots[key]
        for key in [
            k for k, w in self._windows.items() if not w.stamps or w.stamps[-1] <= now - w.seconds
        ]:
            del self._windows[key]
