"""The Redis client: short timeouts so that an outage degrades quickly instead of hanging."""

from __future__ import annotations

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
    url: str, *, socket_timeout: float = 5.0, max_connections: int = 100
) -> aioredis.Redis:
    """The asyncio client for the hot path (event logs, stop flags, limits)."""
    return aioredis.Redis.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout, 2.0),
        health_check_interval=30,
        decode_responses=False,
    )
