"""SSE streams of a run's events: their frames (`id: <seq>` + `data: <json>`, built once when
the event is appended: see `RunEvent`), and `event: ping` every ping interval while the run is
quiet (Dify's framing, plus ids for resume).

The stream reads the log in batches (`read_frames`): every event already there goes out in one
chunk (one write to the socket), so a reader that falls behind a fast run catches up in a few
writes instead of one per token, and a quiet run costs one wait per ping interval.

The web tier (`/api`) sends the same log through Dify's *simple* converter (`simple_frames`):
`message_end` without usage or annotation_reply and with trimmed retriever resources, node
events without their inputs, outputs and details. Only frames holding such an event are
decoded; every other chunk goes out as it is.

A stream that cannot go on (Redis failed under it, or the log vanished before its end) ends
with an `error` event without an `id:` line, then closes: a client's Last-Event-ID stays the
last event it got, so a resume from it (once Redis is back) neither skips nor repeats events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from conduit.api.errors import REDIS_OUTAGE
from conduit.core.runs.eventlog import RunNotFound
from conduit.errors import ConduitError, RedisUnavailable, RunEventsLost
from conduit.services.runs import RunEvents

logger = logging.getLogger(__name__)

PING = b"event: ping\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"


async def event_stream(
    events: RunEvents, *, after: int = 0, ping_interval: float
) -> AsyncGenerator[bytes, None]:
    """Frames of the run's events after `after` until its log ends; pings while it is quiet.
    Ends with an `error` event (no id) when the log cannot be read to its end."""
    cursor = max(after, 0)
    while True:
        try:
            frames = await events.read_frames(after=cursor, wait=ping_interval)
        except RunNotFound:
            yield error_frame(events.task_id, RunEventsLost())
            return
        except REDIS_OUTAGE as failure:
            logger.warning(
                "run %s: its stream lost Redis after %d: %r", events.task_id, cursor, failure
            )
            yield error_frame(
                events.task_id,
                RedisUnavailable(
                    "Redis is unavailable; resume this stream from its last event shortly."
                ),
            )
            return
        if frames is None:
            return
        if not frames.data:
            yield PING
            continue
        cursor = frames.last
        yield frames.data


# The events the simple converter changes (orjson writes `"event"` first, without spaces; the
# same bytes inside a string value would be escaped, so a match is always the event's name).
_SIMPLIFIED = (b'"event":"message_end"', b'"event":"node_started"', b'"event":"node_finished"')
RETRIEVER_RESOURCE_FIELDS = ("segment_id", "position", "document_name", "score", "content")


async def simple_frames(frames: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """`frames` through Dify's simple converter (the web tier's streams)."""
    try:
        async for chunk in frames:
            yield simplify_chunk(chunk)
    finally:
        await frames.aclose()


def simplify_chunk(chunk: bytes) -> bytes:
    """A chunk of SSE frames with each event the simple converter changes rewritten (ids,
    order and every other frame kept byte for byte)."""
    if not any(marker in chunk for marker in _SIMPLIFIED):
        return chunk
    frames = chunk.split(b"\n\n")
    for index, frame in enumerate(frames):
        if any(marker in frame for marker in _SIMPLIFIED):
            head, separator, data = frame.partition(b"data: ")
            frames[index] = head + separator + orjson.dumps(simple_event(orjson.loads(data)))
    return b"\n\n".join(frames)


def simple_event(payload: dict[str, Any]) -> dict[str, Any]:
    """One event as Dify's simple converter sends it."""
    event = payload.get("event")
    data = payload.get("data")
    if event == "message_end" and isinstance(payload.get("metadata"), dict):
        payload["metadata"] = simple_metadata(payload["metadata"])
    elif event == "node_started" and isinstance(data, dict):
        payload["data"] = {**data, "inputs": None, "extras": {}}
    elif event == "node_finished" and isinstance(data, dict):
        payload["data"] = {
            **data,
            "inputs": None,
            "process_data": None,
            "outputs": None,
            "execution_metadata": None,
            "files": [],
        }
    return payload


def simple_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A message's metadata without usage and annotation_reply, its retriever resources
    trimmed to what an end user sees."""
    simple = {k: v for k, v in metadata.items() if k not in ("usage", "annotation_reply")}
    resources = metadata.get("retriever_resources")
    if isinstance(resources, list):
        simple["retriever_resources"] = [
            {field: resource.get(field) for field in RETRIEVER_RESOURCE_FIELDS}
            for resource in resources
            if isinstance(resource, dict)
        ]
    return simple


def error_frame(task_id: str, error: ConduitError) -> bytes:
    """An `error` event of the stream itself, not of the run: without an `id:` line, so that it
    moves no client's Last-Event-ID."""
    payload = {
        "event": "error",
        "task_id": task_id,
        "status": error.status,
        "code": error.code,
        "message": error.message,
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class EventStreamResponse(Response):
    """An SSE response of `frames`, sent as they come. Unlike Starlette's StreamingResponse it
    needs no anyio task group per stream: a plain task waits for the client's disconnect and
    cancels the sending (this task); the cancel is taken back here, so the stream just ends.
    The run is not affected: it goes on, and its log stays readable for a resume."""

    media_type = MEDIA_TYPE

    def __init__(
        self, frames: AsyncGenerator[bytes, None], headers: dict[str, str] | None = None
    ) -> None:
        self.frames = frames
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **headers} if headers else SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sending = asyncio.current_task()
        assert sending is not None
        streaming = True

        def client_gone(watcher: asyncio.Future[None]) -> None:
            if streaming and not watcher.cancelled():
                sending.cancel()

        watcher = asyncio.ensure_future(_until_disconnect(receive))
        watcher.add_done_callback(client_gone)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.frames:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled() or sending.uncancel() > 0:
                raise  # not (only) the client going away: e.g. the server shutting down
            return
        finally:
            streaming = False  # no await since the last frame: a late disconnect cancels nothing
            watcher.cancel()
            await self.frames.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
