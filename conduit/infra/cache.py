"""Cache-aside with TTL, key deletion and tag invalidation behind one interface.

Two backends pass the same conformance suite (`tests/contracts/test_cache.py`):
`MemoryCache` (in-process, LRU-bounded) and `RedisCache`. Values are JSON. A Redis outage never
fails a caller: reads miss and fall through to the loader, writes are skipped, and invalidations
that could not reach Redis are replayed before Redis is used again, so no stale entry survives.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, TypeVar

import orjson
import redis
import redis.asyncio as aioredis

logger = logging.getLogger(__name__)
T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class Cache(Protocol):
    """What every cache backend offers."""

    def get(self, key: str) -> Any:
        """The cached value, or `MISSING`."""

    async def aget(self, key: str) -> Any:
        """`get` for code on an event loop, which it never blocks."""

    def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Store a JSON-serialisable value for `ttl` seconds, grouped under `tags`."""

    def delete(self, *keys: str) -> None:
        """Forget these keys."""

    def invalidate_tags(self, *tags: str) -> None:
        """Forget every key stored under any of these tags."""

    def clear(self) -> None:
        """Forget everything this cache holds."""


def get_or_load(
    cache: Cache,
    key: str,
    loader: Callable[[], T],
    *,
    ttl: float | None = None,
    tags: Iterable[str] = (),
    cache_none: bool = False,
) -> T:
    """Cache-aside: the cached value, or the loader's result (stored unless it is None)."""
    cached = cache.get(key)
    if cached is not MISSING:
        return cached  # type: ignore[no-any-return]
    value = loader()
    if value is not None or cache_none:
        cache.set(key, value, ttl=ttl, tags=tags)
    return value


def _decoded(raw: bytes | str | None) -> Any:
    return MISSING if raw is None else orjson.loads(raw)


class MemoryCache:
    """In-process backend: a bounded LRU with per-entry expiry; thread-safe."""

    def __init__(self, *, default_ttl: float = 300, max_entries: int = 10_000) -> None:
        self._default_ttl = default_ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return MISSING
            expires, raw = entry
            if expires <= time.monotonic():
                del self._entries[key]
                return MISSING
            self._entries.move_to_end(key)
        return orjson.loads(raw)

    async def aget(self, key: str) -> Any:
        return self.get(key)  # memory only: no I/O to wait for

    def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        # A copy of exactly its size: orjson's own result sits in a 4 KiB buffer.
        raw = bytes(memoryview(orjson.dumps(value)))
        expires = time.monotonic() + (ttl if ttl is not None else self._default_ttl)
        with self._lock:
            self._entries[key] = (expires, raw)
            self._entries.move_to_end(key)
            for tag in tags:
                self._tags.setdefault(tag, set()).add(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def invalidate_tags(self, *tags: str) -> None:
        with self._lock:
            for tag in tags:
                for key in self._tags.pop(tag, set()):
                    self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._tags.clear()


class RedisCache:
    """Redis backend. Tags are Redis sets of keys. Degrades to always-miss while Redis is down.

    `aget` reads with the asyncio client given to `attach_async` when called on that client's
    loop (the server's), else it runs `get` in a worker thread."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "conduit:cache:",
        default_ttl: float = 300,
        retry_after: float = 2.0,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._default_ttl = default_ttl
        self._retry_after = retry_after
        self._down_until = 0.0
        self._lock = threading.Lock()
        # Invalidations that could not reach Redis; replayed before Redis is trusted again.
        self._missed_keys: set[str] = set()
        self._missed_tags: set[str] = set()
        self._missed_clear = False
        self._async: tuple[aioredis.Redis, asyncio.AbstractEventLoop] | None = None

    def attach_async(self, client: aioredis.Redis) -> None:
        """Serve `aget` on the running loop with `client` (this cache's Redis, same prefix)."""
        self._async = (client, asyncio.get_running_loop())

    async def detach_async(self) -> None:
        """Stop using the asyncio client and close it."""
        attached, self._async = self._async, None
        if attached is not None:
            await attached[0].aclose()

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _key(self, key: str) -> str:
        return f"{self._prefix}k:{key}"

    def _tag(self, tag: str) -> str:
        return f"{self._prefix}t:{tag}"

    def _failed(self, error: Exception) -> None:
        if self.available:
            logger.warning("cache: Redis unavailable, falling back to the database: %s", error)
        self._down_until = time.monotonic() + self._retry_after

    def _usable(self) -> bool:
        """True when Redis may be used now; replays missed invalidations first after an outage."""
        if not self.available:
            return False
        with self._lock:
            keys, tags = set(self._missed_keys), set(self._missed_tags)
            wipe = self._missed_clear
        if not keys and not tags and not wipe:
            return True
        try:
            if wipe:
                self._clear_all()
            else:
                self._invalidate(keys, tags)
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return False
        with self._lock:
            self._missed_keys -= keys
            self._missed_tags -= tags
            if wipe:
                self._missed_clear = False
        logger.info("cache: Redis is back; replayed %d missed invalidations", len(keys) + len(tags))
        return True

    def _invalidate(self, keys: Iterable[str], tags: Iterable[str]) -> None:
        tag_keys = [self._tag(tag) for tag in tags]
        doomed = [self._key(key) for key in keys]
        if tag_keys:
            pipe = self._redis.pipeline(transaction=False)
            for tag_key in tag_keys:
                pipe.smembers(tag_key)
            for members in pipe.execute():
                doomed.extend(member.decode() for member in members)
            doomed.extend(tag_keys)
        if doomed:
            self._redis.delete(*doomed)

    def get(self, key: str) -> Any:
        if not self._usable():
            return MISSING
        try:
            raw = self._redis.get(self._key(key))
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return MISSING
        return _decoded(raw)

    async def aget(self, key: str) -> Any:
        attached = self._async
        with self._lock:
            missed = bool(self._missed_keys or self._missed_tags or self._missed_clear)
        if attached is None or attached[1] is not asyncio.get_running_loop() or missed:
            # Another loop, or invalidations to replay first (synchronous): from a thread.
            return await asyncio.to_thread(self.get, key)
        if not self.available:
            return MISSING
        try:
            raw = await attached[0].get(self._key(key))
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return MISSING
        return _decoded(raw)

    def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        if not self._usable():
            return
        seconds = ttl if ttl is not None else self._default_ttl
        ttl_ms = max(1, int(seconds * 1000))
        full_key = self._key(key)
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(full_key, orjson.dumps(value), px=ttl_ms)
            for tag in tags:
                tag_key = self._tag(tag)
                pipe.sadd(tag_key, full_key)
                # The tag set lives at least as long as its longest member.
                pipe.pexpire(tag_key, ttl_ms, gt=True)
                pipe.pexpire(tag_key, ttl_ms, nx=True)
            pipe.execute()
        except (redis.RedisError, OSError) as error:
            self._failed(error)

    def delete(self, *keys: str) -> None:
        self._invalidate_or_remember(keys, ())

    def invalidate_tags(self, *tags: str) -> None:
        self._invalidate_or_remember((), tags)

    def _invalidate_or_remember(self, keys: Iterable[str], tags: Iterable[str]) -> None:
        keys, tags = list(keys), list(tags)
        if self._usable():
            try:
                self._invalidate(keys, tags)
                return
            except (redis.RedisError, OSError) as error:
                self._failed(error)
        with self._lock:
            self._missed_keys.update(keys)
            self._missed_tags.update(tags)

    def clear(self) -> None:
        if self._usable():
            try:
                self._clear_all()
                return
            except (redis.RedisError, OSError) as error:
                self._failed(error)
        with self._lock:
            self._missed_clear = True  # wipe everything before Redis is trusted again

    def _clear_all(self) -> None:
        cursor = 0
        while True:
            cursor, found = self._redis.scan(cursor, match=f"{self._prefix}*", count=500)
            if found:
                self._redis.delete(*found)
            if cursor == 0:
                break
