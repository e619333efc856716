"""Limits, atomic (no check-then-set): concurrency slots per app and request rates per key.

`acquire()` takes one of `limit` slots for `holder` (a slot expires after `ttl` seconds, so a
crashed holder cannot leak it forever); `release()` gives it back. `hit()` counts one request in
a sliding window and answers 0.0 when allowed, else the seconds to wait (for `Retry-After`).
Backends: `MemoryLimiter` (one process) and `RedisLimiter` (Lua scripts, server clock); both pass
`tests/contracts/test_limiter.py`.
"""

from __future__ import annotations

from typing import Protocol


class Limiter(Protocol):
    async def acquire(self, key: str, *, limit: int, ttl: float, holder: str) -> bool:
        """Take a slot; False when `limit` slots are held."""

    async def release(self, key: str, holder: str) -> None:
        """Give the holder's slot back (no-op when it holds none)."""

    async def hit(self, key: str, *, limit: int, window: float) -> float:
        """Count a request; 0.0 when within `limit` per `window` seconds, else seconds to wait."""

    async def aclose(self) -> None:
        """Release connections."""
