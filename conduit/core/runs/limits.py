"""Limits, atomic (no check-then-set): concurrency slots per app and request rates per key.

`acquire()` takes one of `limit` slots for `holder` (a slot expires after `ttl` seconds, so a
crashed holder cannot leak it forever); a live holder `renew()`s it with its run's lease, so the
slot of a run whose executor died frees when that lease lapses; `release()` gives it back;
`free_in()` is the real time until a full key's first slot expires (a 429's `Retry-After`).
`hit()` counts one request in a sliding window and answers 0.0 when allowed, else the seconds
to wait (for `Retry-After`).
Backends: `MemoryLimiter` (one process) and `RedisLimiter` (Lua scripts, server clock); both pass
`tests/contracts/test_limiter.py`.
"""

from __future__ import annotations

from typing import Protocol


class Limiter(Protocol):
    async def acquire(self, key: str, *, limit: int, ttl: float, holder: str) -> bool:
        """Take a slot; False when `limit` slots are held."""

    async def renew(self, key: str, *, holder: str, ttl: float) -> None:
        """The holder is alive: its slot now expires `ttl` seconds from now (taken again if it
        had expired: its run still runs)."""

    async def release(self, key: str, holder: str) -> None:
        """Give the holder's slot back (no-op when it holds none)."""

    async def free_in(self, key: str) -> float:
        """Seconds until the key's first slot expires (0.0 when it holds none)."""

    async def hit(self, key: str, *, limit: int, window: float) -> float:
        """Count a request; 0.0 when within `limit` per `window` seconds, else seconds to wait."""

    async def aclose(self) -> None:
        """Release connections."""
