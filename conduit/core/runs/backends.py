"""The run backends of a process: event log, stop registry and limiter — in-process (embedded)
or on Redis (distributed), chosen by whether `CONDUIT_REDIS_URL` is set."""

from __future__ import annotations

from dataclasses import dataclass, field

from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.eventlog.memory import MemoryEventLog
from conduit.core.runs.eventlog.redis import RedisEventLog
from conduit.core.runs.leases import LeaseKeeper
from conduit.core.runs.limits import Limiter
from conduit.core.runs.limits_memory import MemoryLimiter
from conduit.core.runs.limits_redis import RedisLimiter
from conduit.core.runs.stop import StopRegistry
from conduit.core.runs.stop_memory import MemoryStopRegistry
from conduit.core.runs.stop_redis import RedisStopRegistry
from conduit.infra.redis import COMMAND_TIMEOUT, build_async_redis
from conduit.infra.settings import Settings

# Seconds a blocking read of a run's events may last (its XREAD BLOCK stays below it).
_FOLLOW_TIMEOUT = 5.0
# Seconds `aclose()` waits for the event writes of closed runs still behind: a server's (at its
# shutdown, within the drain's grace) and a worker's (at the end of each run's task; the
# writer gives up 60 s into an outage by itself).
_SERVER_FLUSH_WAIT = 5.0
_WORKER_FLUSH_WAIT = 65.0


@dataclass
class RunBackends:
    eventlog: EventLog
    stops: StopRegistry
    limiter: Limiter
    shared: bool  # in-process objects, usable from any thread and loop of this process
    # The leases of the runs executed on these backends, renewed together (one ticker per loop).
    leases: LeaseKeeper = field(default_factory=LeaseKeeper)

    async def aclose(self) -> None:
        await self.eventlog.aclose()
        await self.stops.aclose()
        await self.limiter.aclose()


def build_run_backends(settings: Settings, *, worker: bool = False) -> RunBackends:
    """Redis Streams and Lua when Redis is configured; in-process backends otherwise. Redis
    clients belong to the loop that first uses them: build one set per event loop. `worker`:
    for a Celery worker's tasks, which write runs created elsewhere (queued: the celery
    executor's, and async runs whatever the executor)."""
    if settings.redis.url:
        inline = settings.runs.executor == "inline" and not worker
        # A follower of a run written in another process holds a connection for its blocking
        # XREAD: the event log gets its own pool, sized for thousands of open streams. Runs of
        # the inline executor are written here, and their followers here read the local mirror.
        # Its timeout bounds a blocking read (XREAD BLOCK stays below it), not a request.
        followers = build_async_redis(
            settings.redis.url, socket_timeout=_FOLLOW_TIMEOUT, max_connections=20_000
        )
        # Limits and stop flags: every command under the hot path's timeout, so that a request
        # needing Redis fails (503) within it when Redis hangs. Every client retries once on a
        # fresh connection when a pooled one died (`infra/redis.py`).
        client = build_async_redis(settings.redis.url, socket_timeout=COMMAND_TIMEOUT)
        return RunBackends(
            eventlog=RedisEventLog(
                followers,
                retention=settings.runs.event_retention,
                # Runs are written where they are created (inline), or in a worker that adopts
                # them (celery; the API server only creates and reads them): either way their
                # writer keeps a copy, so that a Redis outage does not fail them.
                mirror=inline,
                adopt=not inline,
                # A worker's task (its backends) ends with its run: what the run could not write
                # while Redis was down is waited for then, up to the writer's own give-up.
                flush_wait=_SERVER_FLUSH_WAIT if inline else _WORKER_FLUSH_WAIT,
                # Pipelined, each round trip under one deadline (no timer per reply).
                batches=build_async_redis(settings.redis.url, socket_timeout=None),
            ),
            stops=RedisStopRegistry(client),
            limiter=RedisLimiter(client),
            shared=False,
        )
    return RunBackends(
        eventlog=MemoryEventLog(
            retention=settings.runs.event_retention,
            max_events_per_run=settings.runs.max_events_per_run,
        ),
        stops=MemoryStopRegistry(),
        limiter=MemoryLimiter(),
        shared=True,
    )
