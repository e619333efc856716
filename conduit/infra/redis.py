"""The Redis clients (short timeouts, so that an outage degrades quickly instead of hanging), and
`GroupCommit`, which sends the commands of many coroutines as one pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis


def build_redis(url: str, *, socket_timeout: float = 0.5) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        retry_on_timeout=False,
        decode_responses=False,
    )


def build_async_redis(
    url: str, *, socket_timeout: float | None = 5.0, max_connections: int = 100
) -> aioredis.Redis:
    """The asyncio client for the hot path (event logs, stop flags, limits). Without a
    `socket_timeout`, a reply is awaited as long as it takes: for a client whose commands all
    run under a deadline of their own (`GroupCommit(timeout=)`); redis-py otherwise arms and
    disarms a timer for every single reply, pipelined or not."""
    return aioredis.Redis.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout or 2.0, 2.0),
        health_check_interval=30,
        decode_responses=False,
    )


PipelineBuilder = Callable[["aioredis.client.Pipeline"], object]


class GroupCommit:
    """Commands from many coroutines sent together: whatever is queued while one round trip is
    in flight goes out as the next pipeline (no timer, so a lone command waits for nothing).

    `await batch.run(build)` queues the commands `build(pipe)` adds and returns their replies
    in order; a command's own error is its reply (`raise_on_error=False`), a failed round trip
    raises in every caller of that batch. Belongs to the event loop of its first use.

    `linger` (seconds): every round trip first waits that long for company (so at most one
    per `linger` plus a round trip's time), for writes nobody waits on at once: a pipeline's
    fixed cost in redis-py is many times a command's.

    `timeout` (seconds): the deadline of a whole round trip, which fails with TimeoutError past
    it (the connection is dropped, not reused); for a client without a socket timeout, one
    timer per round trip instead of one per reply.
    """

    def __init__(
        self, client: aioredis.Redis, *, linger: float = 0.0, timeout: float | None = None
    ) -> None:
        self._client = client
        self._linger = linger
        self._timeout = timeout
        self._queue: list[tuple[PipelineBuilder, asyncio.Future[list[Any]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, build: PipelineBuilder) -> list[Any]:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((build, reply))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await reply

    async def _flush(self) -> None:
        try:
            while True:
                if self._linger > 0:
                    await asyncio.sleep(self._linger)
                if not self._queue:
                    break
                batch, self._queue = self._queue, []
                await self._send(batch)
        finally:
            self._flusher = None
            for _, reply in self._queue:  # only left when the loop is going away
                if not reply.done():
                    reply.set_exception(ConnectionError("The Redis batch was abandoned."))
            self._queue = []

    async def _send(self, batch: list[tuple[PipelineBuilder, asyncio.Future[list[Any]]]]) -> None:
        sizes: list[int] = []
        async with self._client.pipeline(transaction=False) as pipe:
            for build, _ in batch:
                before = len(pipe)
                build(pipe)
                sizes.append(len(pipe) - before)
            try:
                async with asyncio.timeout(self._timeout):
                    replies = await pipe.execute(raise_on_error=False)
            except asyncio.CancelledError:
                for _, reply in batch:
                    reply.cancel()
                raise
            except Exception as failure:
                for _, reply in batch:
                    if not reply.done():
                        reply.set_exception(failure)
                return
        start = 0
        for (_, reply), size in zip(batch, sizes, strict=True):
            if not reply.done():
                reply.set_result(list(replies[start : start + size]))
            start += size
