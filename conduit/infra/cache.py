"""Cache-aside with TTL, key deletion and tag invalidation behind one interface.

Two backends pass the same conformance suite (`tests/contracts/test_cache.py`):
`MemoryCache` (in-process, LRU-bounded) and `RedisCache`. Values are JSON. A Redis outage never
fails a caller: reads miss and fall through to the loader, writes are skipped, and invalidations
that could not reach Redis are replayed before Redis is used again, so no stale entry survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
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


class _NearCache:
    """The entries a process read from Redis, kept in memory for at most `ttl` seconds (LRU,
    thread-safe): `RedisCache`'s first tier while it follows the invalidation channel.

    `epoch` grows with every invalidation and outage: a value read from Redis is kept only if
    no invalidation came while it was being read (it may be the one that was invalidated)."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.epoch = 0
        self.live = False  # following the channel: entries may be served and kept

    def get(self, key: str) -> bytes | None:
        if not self.live:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def keep(self, key: str, raw: bytes, epoch: int, pttl: int) -> None:
        """Keep `raw`, read at `epoch`, for `ttl` or until Redis expires it (`pttl` ms)."""
        with self._lock:
            if not self.live or epoch != self.epoch:
                return
            seconds = self.ttl if pttl < 0 else min(self.ttl, pttl / 1000)
            self._entries[key] = (time.monotonic() + seconds, raw)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def drop(self, keys: Iterable[str]) -> None:
        with self._lock:
            self.epoch += 1
            for key in keys:
                self._entries.pop(key, None)

    def reset(self, *, live: bool) -> None:
        """Forget everything (the channel was lost or regained, Redis failed, or a clear)."""
        with self._lock:
            self.epoch += 1
            self._entries.clear()
            self.live = live


_EVERYTHING = "*"


class RedisCache:
    """Redis backend. Tags are Redis sets of keys. Degrades to always-miss while Redis is down.

    `aget` reads with the asyncio client given to `attach_async` when called on that client's
    loop (the server's), else it runs `get` in a worker thread.

    An attached cache also keeps what it reads in memory for `near_ttl` seconds at most (and
    never beyond the entry's own expiry), while it follows `{prefix}invalidations`: every write
    (`set`, `delete`, `invalidate_tags`, `clear`) of any process publishes the keys it replaced
    or deleted there, and each server process drops them from memory as the message arrives.
    Without the channel (not attached, or its connection lost) nothing is kept, so a missed
    message never leaves a stale entry; an outage forgets what was kept."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "conduit:cache:",
        default_ttl: float = 300,
        retry_after: float = 2.0,
        near_ttl: float = 0.0,
        near_max_entries: int = 10_000,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._channel = f"{prefix}invalidations"
        self._origin = uuid.uuid4().hex  # this cache's messages on the channel
        self._default_ttl = default_ttl
        self._retry_after = retry_after
        self._down_until = 0.0
        self._lock = threading.Lock()
        # Invalidations that could not reach Redis; replayed before Redis is trusted again.
        self._missed_keys: set[str] = set()
        self._missed_tags: set[str] = set()
        self._missed_clear = False
        self._async: tuple[aioredis.Redis, asyncio.AbstractEventLoop] | None = None
        self._near = _NearCache(near_ttl, near_max_entries)
        self._follower: asyncio.Task[None] | None = None

    def attach_async(self, client: aioredis.Redis) -> None:
        """Serve `aget` on the running loop with `client` (this cache's Redis, same prefix), and
        keep entries in memory while following the invalidation channel (if `near_ttl`)."""
        self._async = (client, asyncio.get_running_loop())
        if self._near.ttl > 0:
            self._follower = asyncio.get_running_loop().create_task(self._follow(client))

    async def detach_async(self) -> None:
        """Stop using the asyncio client (and memory) and close it."""
        attached, self._async = self._async, None
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        self._near.reset(live=False)
        if attached is not None:
            await attached[0].aclose()

    async def _follow(self, client: aioredis.Redis) -> None:
        """Follow the invalidation channel; memory is used only from the subscription's
        confirmation on, and forgotten whenever the subscription is lost."""
        failing = False
        while True:
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._near.reset(live=True)
                        failing = False
                    elif message["type"] == "message":
                        self._invalidated(message["data"])
            except (redis.RedisError, OSError) as error:
                if not failing:
                    logger.warning("cache: invalidation channel lost, memory tier off: %r", error)
                failing = True
            finally:
                self._near.reset(live=False)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._retry_after)

    def _announce(self, pipe: Any, keys: list[str] | str) -> None:
        """Publish an invalidation (`keys`, or `_EVERYTHING`) to the other processes."""
        pipe.publish(self._channel, orjson.dumps([self._origin, keys]))

    def _invalidated(self, data: bytes) -> None:
        """A message of the channel: [origin, keys or "*"]. This cache's own are done already."""
        try:
            origin, keys = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            self._near.reset(live=self._near.live)  # unreadable: forget everything, to be safe
            return
        if origin == self._origin:
            return
        if keys == _EVERYTHING or not isinstance(keys, list):
            self._near.reset(live=self._near.live)
        else:
            self._near.drop(str(key) for key in keys)

    @property
    def memory_tier_live(self) -> bool:
        """Whether entries read are kept in memory now (attached, and following the channel)."""
        return self._near.live

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _key(self, key: str) -> str:
        return f"{self._prefix}k:{key}"

    def _tag(self, tag: str) -> str:
        return f"{self._prefix}t:{tag}"

    def _failed(self, error: Exception) -> None:
        # Invalidations may now be missed (ours cannot be sent, others' may not come).
        self._near.reset(live=self._near.live)
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
        if not doomed and not tag_keys:
            return
        self._near.drop(doomed)
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(*doomed, *tag_keys)
        if doomed:
            self._announce(pipe, doomed)
        pipe.execute()

    def get(self, key: str) -> Any:
        if not self._usable():
            return MISSING
        full_key = self._key(key)
        held = self._held(full_key)
        if held is not MISSING:
            return held
        epoch = self._near.epoch
        try:
            pipe = self._redis.pipeline(transaction=False)
            self._read(pipe, full_key)
            replies = pipe.execute()
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return MISSING
        return self._value(full_key, replies, epoch)

    async def aget(self, key: str) -> Any:
        attached = self._async
        with self._lock:
            missed = bool(self._missed_keys or self._missed_tags or self._missed_clear)
        if attached is None or attached[1] is not asyncio.get_running_loop() or missed:
            # Another loop, or invalidations to replay first (synchronous): from a thread.
            return await asyncio.to_thread(self.get, key)
        if not self.available:
            return MISSING
        full_key = self._key(key)
        held = self._held(full_key)
        if held is not MISSING:
            return held
        epoch = self._near.epoch
        try:
            async with attached[0].pipeline(transaction=False) as pipe:
                self._read(pipe, full_key)
                replies = await pipe.execute()
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return MISSING
        return self._value(full_key, replies, epoch)

    def _held(self, full_key: str) -> Any:
        """The value the memory tier holds, or MISSING."""
        near = self._near.get(full_key)
        return MISSING if near is None else orjson.loads(near)

    def _read(self, pipe: Any, full_key: str) -> None:
        """The read's commands: the value and, while the memory tier is live, its time to live."""
        pipe.get(full_key)
        if self._near.live:
            pipe.pttl(full_key)

    def _value(self, full_key: str, replies: list[Any], epoch: int) -> Any:
        """The value `_read` got (MISSING if none), kept in memory if its TTL came with it."""
        raw = replies[0]
        if raw is None:
            return MISSING
        if len(replies) > 1:
            self._near.keep(full_key, raw, epoch, replies[1])
        return orjson.loads(raw)

    def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        if not self._usable():
            return
        seconds = ttl if ttl is not None else self._default_ttl
        ttl_ms = max(1, int(seconds * 1000))
        full_key = self._key(key)
        self._near.drop((full_key,))
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(full_key, orjson.dumps(value), px=ttl_ms)
            # A value replaced is a value invalidated: no process keeps the one it read.
            self._announce(pipe, [full_key])
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
        self._near.reset(live=self._near.live)
        cursor = 0
        while True:
            cursor, found = self._redis.scan(cursor, match=f"{self._prefix}*", count=500)
            if found:
                self._redis.delete(*found)
            if cursor == 0:
                break
        self._announce(self._redis, _EVERYTHING)
