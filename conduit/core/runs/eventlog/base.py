"""The EventLog interface: an append-only, numbered, retained log of a run's events.

One writer per run (its runner) appends events numbered 1, 2, 3, ...; any number of readers in
any process follow it from any point (`after=N` yields events N+1, ...), live, until the run's
log is closed. After `close()` the log is kept for the retention time, then forgotten; following
a forgotten or unknown run raises `RunNotFound`. Backends: `memory.MemoryEventLog` (one process;
thread-safe, so a runner on a worker thread can append while the API's loop reads) and
`redis.RedisEventLog` (Redis Streams). Both pass `tests/contracts/test_eventlog.py`.

`read()` is the primitive: it hands over every event already there as one batch (an SSE stream
writes a batch as one chunk, and pings when a read comes back empty), and `follow()` is built on
it by `follow_by_reading()`.
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

    async def read(self, task_id: str, *, after: int, wait: float) -> list[RunEvent] | None:
        """The events with seq > `after` that are there (one batch, in order); when there are
        none yet, wait up to `wait` seconds for some. `[]`: nothing came, the run goes on;
        None: the log is closed and read to its end. Raises RunNotFound for an unknown run."""

    def follow(self, task_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events with seq > `after`, live, ending when the log is closed. Raises RunNotFound."""

    async def aclose(self) -> None:
        """Release connections."""


# How long one read inside `follow_by_reading` waits before looking again.
_FOLLOW_WAIT = 30.0


async def follow_by_reading(
    log: EventLog, task_id: str, *, after: int = 0, wait: float = _FOLLOW_WAIT
) -> AsyncIterator[RunEvent]:
    """`follow()` on top of `read()`: RunNotFound before the first event; a run forgotten
    while it is followed (evicted or expired) just ends."""
    cursor = max(after, 0)
    started = False
    while True:
        try:
            batch = await log.read(task_id, after=cursor, wait=wait)
        except RunNotFound:
            if not started:
                raise
            return
        started = True
        if batch is None:
            return
        for event in batch:
            cursor = event.seq
            yield event
