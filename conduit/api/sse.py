"""The one place RunEvents become SSE frames: `id: <seq>` + `data: <json>`, and `event: ping`
every ping interval while the run is quiet (Dify's framing, plus ids for resume)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson

from conduit.core.runs.events import RunEvent

PING = b"event: ping\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"


def frame(event: RunEvent) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (event.seq, orjson.dumps(event.payload))


async def event_stream(
    events: AsyncIterator[RunEvent], *, ping_interval: float
) -> AsyncIterator[bytes]:
    """Frames of `events` until the run's log ends; pings while nothing happens."""
    iterator = aiter(events)
    pending: asyncio.Future[RunEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait((pending,), timeout=ping_interval)
            if not done:
                yield PING
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield frame(event)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
