"""The EventLog interface: an append-only, numbered, retained log of a run's events.

One writer per run (its runner) appends events numbered 1, 2, 3, ...; any number of readers in
any process follow it from any point (`after=N` yields events N+1, ...), live, until the run's
log is closed. After `close()` the log is kept for the retention time, then forgotten; following
a forgotten or unknown run raises `RunNotFound`. Backends: `memory.MemoryEventLog` (one process;
thread-safe, so a runner on a worker thread can append while the API's loop reads) and
`redis.RedisEventLog` (Redis Streams). Both pass `tests/contracts/test_eventlog.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from conduit.core.runs.events import RunEvent
from conduit.errors import NotFound


class RunNotFound(NotFound):
    code = "not_found"
    default_message = "The run is unknown or its events have expired."


class EventLog(Protocol):
    async def create(self, task_id: str, *, meta: dict[str, str] | None = None) -> None:
        """Open the log of a new run (idempotent); `meta` is kept with it (e.g. the owner)."""

    async def append(self, task_id: str, event: str, payload: dict[str, Any]) -> RunEvent:
        """Append the next event (numbered by the log) and wake every follower."""

    async def close(self, task_id: str) -> None:
        """No more events: followers end after the last one; retention starts now."""

    async def meta(self, task_id: str) -> dict[str, str] | None:
        """The run's metadata, or None when the run is unknown or expired."""

    def follow(self, task_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events with seq > `after`, live, ending when the log is closed. Raises RunNotFound."""

    async def aclose(self) -> None:
        """Release connections."""
