"""The in-process StopRegistry: owners and stop flags in dicts, for one process (embedded mode).

Thread-safe: a stop request may come from any thread. A waiting runner parks a future of its
own event loop, which `request_stop()` resolves through `loop.call_soon_threadsafe`, so the
wait ends at once rather than at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]
# Registrations between two sweeps of expired entries (keeps the sweep's cost amortised O(1)).
_SWEEP_EVERY = 1024


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class MemoryStopRegistry:
    """StopRegistry for one process; entries expire with the owner's ttl."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[str, tuple[str, float]] = {}  # task_id -> (owner, expires_at)
        self._stopped: dict[str, float] = {}  # task_id -> expires_at
        self._waiters: dict[str, list[_Waiter]] = {}
        self._registrations = 0

    async def register(self, task_id: str, owner: str, *, ttl: float) -> None:
        """Record the run's owner for `ttl` seconds."""
        with self._lock:
            now = time.monotonic()
            self._owners[task_id] = (owner, now + ttl)
            self._registrations += 1
            if self._registrations % _SWEEP_EVERY == 0:
                self._sweep(now)

    async def request_stop(self, task_id: str, owner: str) -> bool:
        """Flag the run stopped if `owner` owns it; True when it was flagged."""
        with self._lock:
            entry = self._owners.get(task_id)
            now = time.monotonic()
            if entry is None or entry[1] <= now or entry[0] != owner:
                return False
            self._stopped[task_id] = entry[1]
            waiters = self._waiters.pop(task_id, [])
        for loop, future in waiters:
            # A RuntimeError means that waiter's loop is closed: nobody is left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)
        return True

    async def is_stop_requested(self, task_id: str) -> bool:
        """Whether a stop was requested (and has not expired or been forgotten)."""
        with self._lock:
            return self._flagged(task_id, time.monotonic())

    async def wait_for_stop(self, task_id: str) -> None:
        """Return as soon as a stop is requested; cancel to stop waiting."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._flagged(task_id, time.monotonic()):
                return
            waiter: _Waiter = (loop, loop.create_future())
            self._waiters.setdefault(task_id, []).append(waiter)
        try:
            await waiter[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(task_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[task_id]

    async def forget(self, task_id: str) -> None:
        """Drop the run's owner and flag."""
        with self._lock:
            self._owners.pop(task_id, None)
            self._stopped.pop(task_id, None)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _flagged(self, task_id: str, now: float) -> bool:
        expires_at = self._stopped.get(task_id)
        return expires_at is not None and expires_at > now

    def _sweep(self, now: float) -> None:
        for task_id in [t for t, (_, expires_at) in self._owners.items() if expires_at <= now]:
            del self._owners[task_id]
        for task_id in [t for t, expires_at in self._stopped.items() if expires_at <= now]:
            del self._stopped[task_id]
