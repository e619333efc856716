"""The Redis clients (short timeouts, so that an outage degrades quickly instead of hanging), and
`GroupCommit`, which sends the commands of many coroutines as one pipeline.

Every client retries a command once, at once, on a fresh connection when its connection fails
(`ConnectionError`: reset, closed by the server, refused). After Redis restarts, each pooled
connection is dead and fails its next command; without the retry every one of them failed a
request, one after the other, for as long as the pool kept dead connections (minutes under
light load, a busy pool holding many). During an outage the retry is refused at once, so it
costs nothing. A `TimeoutError` is not retried: Redis (or the path to it) is hung, a second
wait would only double the caller's, and a command that timed out may have been applied.
Commands retried after a lost reply must be idempotent, and are: every write Conduit sends
is (SET, HSET, PEXPIRE, ZADD of a named member, the limiter's and the stop registry's
scripts, DEL, PUBLISH of an invalidation), except XADD, whose explicit ids make a repeat fail
rather than duplicate; the event log recognises its own entry then (`eventlog/redis.py`).

Under uvloop a connection Redis closes while it is being written to (a shutdown just after the
connect, before HELLO) fails with uvloop's `RuntimeError` ("the handler is closed") instead
of an `OSError`; `_Connection` makes that the `ConnectionError` it is, so that it is retried
and, during an outage, answered 503 like every other lost connection instead of a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

# The hot path's commands (limits, stop flags, the event log's creation and first looks): a
# request that needs Redis waits at most this long for one, then fails (503) instead of hanging.
COMMAND_TIMEOUT = 2.0
_CONNECT_TIMEOUT = 2.0
_HEALTH_CHECK_INTERVAL = 30


class _Connection(aioredis.Connection):
    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        try:
            await super().send_packed_command(command, check_health)
        except RuntimeError as error:  # uvloop's write on a transport closed under it
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Redis closed the connection: {error}") from error


def build_redis(url: str, *, socket_timeout: float = 0.5) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=_HEALTH_CHECK_INTERVAL,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        decode_responses=False,
    )


def build_async_redis(
    url: str, *, socket_timeout: float | None = COMMAND_TIMEOUT, max_connections: int = 100
) -> aioredis.Redis:
    """The asyncio client for the hot path (event logs, stop flags, limits). Without a
    `socket_timeout`, a reply is awaited as long as it takes: for a client whose commands all
    run under a deadline of their own (`GroupCommit(timeout=)`); redis-py otherwise arms and
    disarms a timer for every single reply, pipelined or not."""
    return aioredis.Redis.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout or _CONNECT_TIMEOUT, _CONNECT_TIMEOUT),
        health_check_interval=_HEALTH_CHECK_INTERVAL,
        retry=AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        decode_responses=False,
        # A redis:// URL's; rediss:// and unix:// choose their own (the URL's options win).
        connection_class=_Connection,
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

    `timeout` (seconds): the deadline of a whole round trip, which fails with Redis's
    TimeoutError past it (the connection is dropped, not reused); for a client without a socket
    timeout, one timer per round trip instead of one per reply. Failures are Redis's own
    errors (`ConnectionError`, `TimeoutError`), whatever layer raised them, so that callers and
    the API's error handler see one kind of outage.
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
                    reply.set_exception(RedisConnectionError("The Redis batch was abandoned."))
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
            except TimeoutError:  # the deadline: asyncio's, not Redis's
                self._fail(batch, RedisTimeoutError(f"Redis did not answer in {self._timeout:g}s"))
                return
            except Exception as failure:
                self._fail(batch, failure)
                return
        start = 0
        for (_, reply), size in zip(batch, sizes, strict=True):
            if not reply.done():
                reply.set_result(list(replies[start : start + size]))
            start += size

    @staticmethod
    def _fail(
        batch: list[tuple[PipelineBuilder, asyncio.Future[list[Any]]]], failure: Exception
    ) -> None:
        for _, reply in batch:
            if not reply.done():
                reply.set_exception(failure)
