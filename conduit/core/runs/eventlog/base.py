"""The EventLog interface: an append-only, numbered, retained log of a run's events.

One writer per run (its runner) appends events numbered 1, 2, 3, ...; any number of readers in
any process follow it from any point (`after=N` yields events N+1, ...), live, until the run's
log is closed. After `close()` the log is kept for the retention time, then forgotten; following
a forgotten or unknown run raises `RunNotFound`. Backends: `memory.MemoryEventLog` (one process;
thread-safe, so a runner on a worker thread can append while the API's loop reads) and
`redis.RedisEventLog` (Redis Streams). Both pass `tests/contracts/test_eventlog.py`.

`read()` is the primitive: it hands over every event already there as one batch, and `follow()`
is built on it by `follow_by_reading()`. `read_frames()` is `read()` as the chunk an SSE stream
writes (the batch's frames end to end; the stream pings when it comes back empty), which a
backend can hand over without an object per event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from conduit.core.runs.events import Frames, RunEvent
from conduit.errors import NotFound


class RunNotFound(NotFound):
    code = "not_found"
    default_message = "The run is unknown or its events have expired."


class EventLog(Protocol):
    async def create(
        self, task_id: str, *, meta: dict[str, str] | None = None, written_here: bool = True
    ) -> None:
        """Open the log of a new run (idempotent); `meta` is kept with it (e.g. the owner).
        `written_here`: False when another process will write it (a queued run)."""

    async def append(self, task_id: str, event: str, payload: dict[str, Any] | bytes) -> RunEvent:
        """Append the next event (numbered by the log) and wake every follower. `payload`: a
        JSON object, as a dict or already serialised."""

    async def extend(
        self, task_id: str, event: str, payloads: Sequence[dict[str, Any] | bytes]
    ) -> list[RunEvent]:
        """Append the next events, all of the same kind, in order, all or none: what one
        `append` each would do, for less (pieces of an answer that arrived together)."""

    async def take_over(
        self, task_id: str, events: Sequence[tuple[str, dict[str, Any] | bytes]]
    ) -> list[RunEvent]:
        """Append a taker's last events to a run whose writer is gone (in this process or
        another), in order, numbered past every event that writer may have shown its readers
        but not yet written where the taker reads: no reader has seen their ids already, so a
        reader that resumes from its last id gets them."""

    async def close(self, task_id: str) -> None:
        """No more events: followers end after the last one; retention starts now."""

    async def release(self, task_id: str) -> None:
        """This process no longer writes the run (it was taken over elsewhere, which ends its
        log): its readers here go on from wherever the taker's events land."""

    async def meta(self, task_id: str) -> dict[str, str] | None:
        """The run's metadata, or None when the run is unknown or expired."""

    async def read(self, task_id: str, *, after: int, wait: float) -> list[RunEvent] | None:
        """The events with seq > `after` that are there (one batch, in order); when there are
        none yet, wait up to `wait` seconds for some. `[]`: nothing came, the run goes on;
        None: the log is closed and read to its end. Raises RunNotFound for an unknown run."""

    async def read_frames(self, task_id: str, *, after: int, wait: float) -> Frames | None:
        """`read()` as one chunk: the frames of the events it would return, end to end, and
        the last one's seq; `Frames(after, b"")` where `read()` returns `[]`."""

    def follow(self, task_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events with seq > `after`, live, ending when the log is closed. Raises RunNotFound."""

    async def aclose(self) -> None:
        """Release connections."""


def join_frames(batch: list[RunEvent] | None, after: int) -> Frames | None:
    """`read_frames()`'s answer from `read()`'s."""
    if batch is None:
        return None
    if not batch:
        return Frames(max(after, 0), b"")
    return Frames(batch[-1].seq, b"".join([event.frame for event in batch]))


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
