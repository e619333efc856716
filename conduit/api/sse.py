"""The one place RunEvents become SSE frames: `id: <seq>` + `data: <json>`, and `event: ping`
every ping interval while the run is quiet (Dify's framing, plus ids for resume).

The stream reads the log in batches: every event already there goes out in one chunk (one
write to the socket), so a reader that falls behind a fast run catches up in a few writes
instead of one per token, and a quiet run costs one wait per ping interval.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from conduit.core.runs.eventlog import EventLog, RunNotFound
from conduit.core.runs.events import RunEvent

PING = b"event: ping\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"


def frame(event: RunEvent) -> bytes:
    return event.frame


async def event_stream(
    log: EventLog, task_id: str, *, after: int = 0, ping_interval: float
) -> AsyncIterator[bytes]:
    """Frames of the run's events after `after` until its log ends; pings while it is quiet.
    A log that expires under the stream ends it."""
    cursor = max(after, 0)
    while True:
        try:
            batch = await log.read(task_id, after=cursor, wait=ping_interval)
        except RunNotFound:
            return
        if batch is None:
            return
        if not batch:
            yield PING
            continue
        cursor = batch[-1].seq
        if len(batch) == 1:
            yield frame(batch[0])
        else:
            yield b"".join([frame(event) for event in batch])
