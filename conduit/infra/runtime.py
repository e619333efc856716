"""The resources of this process (database, cache, settings), bound once per process.

The server binds its own at start (tasks and signal handlers in it share them); a `conduit worker`
process builds them lazily after fork.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from conduit.infra.cache import Cache, MemoryCache, RedisCache
from conduit.infra.db import Database, build_engine
from conduit.infra.redis import build_redis
from conduit.infra.settings import Settings, load_settings


@dataclass
class Resources:
    settings: Settings
    db: Database
    cache: Cache


_lock = threading.Lock()
_bound: tuple[int, Resources] | None = None


def build_resources(settings: Settings) -> Resources:
    db = Database(
        build_engine(
            settings.database_url,
            pool_size=settings.database.pool_size,
            max_overflow=settings.database.max_overflow,
            connect_timeout=settings.database.connect_timeout,
            echo=settings.database.echo,
        )
    )
    cache: Cache
    if settings.redis.url:
        cache = RedisCache(
            build_redis(settings.redis.url, socket_timeout=settings.redis.socket_timeout),
            prefix=settings.cache.prefix,
            default_ttl=settings.cache.default_ttl,
            retry_after=settings.redis.retry_after,
            near_ttl=settings.cache.near_ttl,
            near_max_entries=settings.cache.max_entries,
        )
    else:
        cache = MemoryCache(
            default_ttl=settings.cache.default_ttl, max_entries=settings.cache.max_entries
        )
    return Resources(settings=settings, db=db, cache=cache)


def bind(resources: Resources) -> None:
    global _bound
    with _lock:
        _bound = (os.getpid(), resources)


def resources() -> Resources:
    """This process's resources, built from the environment on first use after a fork."""
    global _bound
    with _lock:
        if _bound is None or _bound[0] != os.getpid():
            _bound = (os.getpid(), build_resources(load_settings()))
        return _bound[1]
