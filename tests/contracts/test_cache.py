"""The cache contract: every backend behind `conduit.infra.cache.Cache` passes this one suite.

`MemoryCache` always runs; `RedisCache` runs whenever Redis answers (in both test modes). The
Redis backend shares one flushed Redis database per module and gives each test its own prefix,
so the tests neither see each other's keys nor use up the harness's Redis database numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from conduit.infra.cache import MISSING, Cache, MemoryCache, RedisCache, get_or_load
from conduit.infra.redis import build_async_redis, build_redis
from tests import support

SHORT_TTL = 0.2
T = TypeVar("T")


@pytest.fixture(scope="module")
def shared_redis(shared_redis_url: str) -> Iterator[redis.Redis]:
    client = build_redis(shared_redis_url)
    yield client
    client.close()


class LoopThread:
    """An event loop in a thread of its own, as the server's is to its worker threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=15)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def attached(cache: RedisCache, url: str) -> Iterator[LoopThread]:
    """`cache` attached on a loop running in a thread; its memory tier live before it yields."""
    loop = LoopThread()

    async def attach() -> None:
        cache.attach_async(build_async_redis(url))

    try:
        loop.run(attach())
        support.wait_for(lambda: cache.memory_tier_live, timeout=5, what="the memory tier")
        yield loop
    finally:
        loop.run(cache.detach_async())
        loop.close()


@pytest.fixture(params=["memory", "redis", "redis+memory"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    """Each backend; `redis+memory` is a server's Redis cache: attached on a running loop, with
    its memory tier live (the calls below come from another thread, as a service's do)."""
    if request.param == "memory":
        yield MemoryCache()
        return
    client: redis.Redis = request.getfixturevalue("shared_redis")
    prefix = f"test:{uuid.uuid4().hex}:"
    if request.param == "redis":
        yield RedisCache(client, prefix=prefix)
        return
    cache = RedisCache(client, prefix=prefix, near_ttl=30)
    with attached(cache, request.getfixturevalue("shared_redis_url")) as loop:
        request.node.cache_loop = loop
        yield cache


class Loader:
    """A loader that counts its calls."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.value


class TestReadOnTheLoop:
    """`aget` answers as `get` does: with the cache's own reads, or (Redis) an asyncio client
    attached on the running loop, or from a thread when the loop is not the attached one."""

    @pytest.mark.parametrize("attach", ["attached", "thread"])
    def test_aget_reads_what_get_reads(
        self, cache: Cache, attach: str, request: pytest.FixtureRequest
    ) -> None:
        async def reads() -> None:
            cache.set("key", {"n": [1, "é"]})
            cache.set("short", "v", ttl=SHORT_TTL)
            cache.set("gone", 1)
            cache.delete("gone")
            for _ in range(2):  # the second time from memory, where there is a memory tier
                assert await cache.aget("key") == {"n": [1, "é"]}
                assert await cache.aget("never-set") is MISSING
                assert await cache.aget("gone") is MISSING
                assert await cache.aget("short") == "v"
            await asyncio.sleep(SHORT_TTL + 0.1)
            assert await cache.aget("short") is MISSING

        async def scenario() -> None:
            if isinstance(cache, RedisCache) and attach == "attached":
                cache.attach_async(build_async_redis(request.getfixturevalue("shared_redis_url")))
            try:
                await reads()
            finally:
                if isinstance(cache, RedisCache):
                    await cache.detach_async()

        loop: LoopThread | None = getattr(request.node, "cache_loop", None)
        if loop is None:
            asyncio.run(scenario())
        elif attach == "attached":
            loop.run(reads())  # on the loop the cache is attached to
        else:
            pytest.skip("this cache is attached to a running loop already")

    def test_a_cache_attached_on_another_loop_reads_from_a_thread(
        self, cache: Cache, request: pytest.FixtureRequest
    ) -> None:
        if not isinstance(cache, RedisCache):
            pytest.skip("only a Redis cache attaches a client to a loop")
        if cache.memory_tier_live:
            pytest.skip("this cache is attached to a running loop already")
        cache.set("key", 7)
        url = request.getfixturevalue("shared_redis_url")

        async def attach() -> None:
            cache.attach_async(build_async_redis(url))

        async def read() -> Any:
            return await cache.aget("key")

        asyncio.run(attach())  # that loop is gone: its client must not be used
        assert asyncio.run(read()) == 7


class TestReadWrite:
    def test_missing_key_reads_as_missing(self, cache: Cache) -> None:
        assert cache.get("never-set") is MISSING

    @pytest.mark.parametrize(
        "value",
        [
            {"name": "app", "nested": {"n": 1, "items": [1, 2]}},
            [1, "two", {"three": 3}],
            "text é",
            42,
            None,
        ],
        ids=["dict", "list", "str", "int", "none"],
    )
    def test_stored_json_value_reads_back_equal(self, cache: Cache, value: Any) -> None:
        cache.set("key", value)
        assert cache.get("key") == value
        assert cache.get("key") is not MISSING

    def test_set_overwrites_the_previous_value(self, cache: Cache) -> None:
        cache.set("key", 1)
        cache.set("key", 2)
        assert cache.get("key") == 2

    def test_entry_expires_after_its_ttl(self, cache: Cache) -> None:
        cache.set("short", "v", ttl=SHORT_TTL)
        cache.set("long", "v", ttl=60)
        assert cache.get("short") == "v"
        support.wait_for(lambda: cache.get("short") is MISSING, timeout=3, what="expiry")
        assert cache.get("long") == "v"

    def test_entry_does_not_expire_before_its_ttl(self, cache: Cache) -> None:
        cache.set("key", "v", ttl=5)
        time.sleep(SHORT_TTL)
        assert cache.get("key") == "v"

    def test_mutating_a_returned_value_leaves_the_cache_unchanged(self, cache: Cache) -> None:
        cache.set("key", {"items": [1]})
        first = cache.get("key")
        first["items"].append(2)
        first["extra"] = True
        assert cache.get("key") == {"items": [1]}

    def test_mutating_the_stored_object_afterwards_leaves_the_cache_unchanged(
        self, cache: Cache
    ) -> None:
        original = {"items": [1]}
        cache.set("key", original)
        original["items"].append(2)
        assert cache.get("key") == {"items": [1]}


class TestInvalidation:
    def test_deleted_key_reads_as_missing(self, cache: Cache) -> None:
        cache.set("a", 1)
        cache.set("b", 2)
        cache.set("c", 3)
        cache.delete("a", "b")
        assert cache.get("a") is MISSING
        assert cache.get("b") is MISSING
        assert cache.get("c") == 3

    def test_deleting_an_absent_key_is_harmless(self, cache: Cache) -> None:
        cache.delete("never-set")
        assert cache.get("never-set") is MISSING

    def test_invalidated_tag_forgets_every_key_under_it(self, cache: Cache) -> None:
        cache.set("a1", 1, tags=["a"])
        cache.set("a2", 2, tags=["a"])
        cache.set("b1", 3, tags=["b"])
        cache.set("untagged", 4)
        cache.invalidate_tags("a")
        assert cache.get("a1") is MISSING
        assert cache.get("a2") is MISSING
        assert cache.get("b1") == 3
        assert cache.get("untagged") == 4

    def test_invalidating_several_tags_at_once(self, cache: Cache) -> None:
        cache.set("a1", 1, tags=["a"])
        cache.set("b1", 2, tags=["b"])
        cache.set("c1", 3, tags=["c"])
        cache.invalidate_tags("a", "b")
        assert cache.get("a1") is MISSING
        assert cache.get("b1") is MISSING
        assert cache.get("c1") == 3

    @pytest.mark.parametrize("tag", ["first", "second"])
    def test_key_under_two_tags_goes_with_either(self, cache: Cache, tag: str) -> None:
        cache.set("both", 1, tags=["first", "second"])
        cache.set("only-first", 2, tags=["first"])
        cache.set("only-second", 3, tags=["second"])
        cache.invalidate_tags(tag)
        assert cache.get("both") is MISSING
        survivor = "only-second" if tag == "first" else "only-first"
        assert cache.get(survivor) is not MISSING

    def test_invalidating_an_unknown_tag_is_harmless(self, cache: Cache) -> None:
        cache.set("key", 1, tags=["known"])
        cache.invalidate_tags("unknown")
        assert cache.get("key") == 1

    def test_key_stored_again_after_invalidation_is_served(self, cache: Cache) -> None:
        cache.set("key", 1, tags=["t"])
        cache.invalidate_tags("t")
        cache.set("key", 2, tags=["t"])
        assert cache.get("key") == 2

    def test_clear_forgets_everything(self, cache: Cache) -> None:
        cache.set("a", 1)
        cache.set("b", 2, tags=["t"])
        cache.clear()
        assert cache.get("a") is MISSING
        assert cache.get("b") is MISSING
        cache.set("c", 3)
        assert cache.get("c") == 3


class TestGetOrLoad:
    def test_loader_runs_once_then_the_cache_serves(self, cache: Cache) -> None:
        loader = Loader({"v": 1})
        assert get_or_load(cache, "key", loader) == {"v": 1}
        assert get_or_load(cache, "key", loader) == {"v": 1}
        assert loader.calls == 1
        assert cache.get("key") == {"v": 1}

    def test_loaded_value_is_stored_under_its_tags(self, cache: Cache) -> None:
        loader = Loader("v")
        get_or_load(cache, "key", loader, tags=["t"])
        cache.invalidate_tags("t")
        assert get_or_load(cache, "key", loader) == "v"
        assert loader.calls == 2

    def test_loaded_value_expires_after_its_ttl(self, cache: Cache) -> None:
        loader = Loader("v")
        get_or_load(cache, "key", loader, ttl=SHORT_TTL)
        support.wait_for(lambda: cache.get("key") is MISSING, timeout=3, what="expiry")
        assert get_or_load(cache, "key", loader) == "v"
        assert loader.calls == 2

    def test_none_is_not_cached_by_default(self, cache: Cache) -> None:
        loader = Loader(None)
        assert get_or_load(cache, "key", loader) is None
        assert get_or_load(cache, "key", loader) is None
        assert loader.calls == 2
        assert cache.get("key") is MISSING

    def test_none_is_cached_when_asked(self, cache: Cache) -> None:
        loader = Loader(None)
        assert get_or_load(cache, "key", loader, cache_none=True) is None
        assert get_or_load(cache, "key", loader, cache_none=True) is None
        assert loader.calls == 1
        assert cache.get("key") is None

    def test_falsy_values_other_than_none_are_cached(self, cache: Cache) -> None:
        for key, value in (("zero", 0), ("empty-str", ""), ("empty-list", []), ("false", False)):
            loader = Loader(value)
            assert get_or_load(cache, key, loader) == value
            assert get_or_load(cache, key, loader) == value
            assert loader.calls == 1, key


class TestMemoryCacheEviction:
    def test_least_recently_used_entry_is_evicted_beyond_max_entries(self) -> None:
        cache = MemoryCache(max_entries=2)
        cache.set("a", 1)
        cache.set("b", 2)
        assert cache.get("a") == 1  # "a" is now more recent than "b"
        cache.set("c", 3)
        assert cache.get("b") is MISSING
        assert cache.get("a") == 1
        assert cache.get("c") == 3

    def test_overwriting_a_key_does_not_evict(self) -> None:
        cache = MemoryCache(max_entries=2)
        cache.set("a", 1)
        cache.set("b", 2)
        cache.set("a", 10)
        assert cache.get("a") == 10
        assert cache.get("b") == 2

    def test_default_ttl_applies_when_none_is_given(self) -> None:
        cache = MemoryCache(default_ttl=SHORT_TTL)
        cache.set("key", 1)
        support.wait_for(lambda: cache.get("key") is MISSING, timeout=3, what="expiry")


class TestMemoryTier:
    """A server's Redis cache keeps what it read in memory, and forgets it as soon as any
    process (here: another `RedisCache` on its own client) writes or invalidates it."""

    @pytest.fixture
    def prefix(self) -> str:
        return f"test:{uuid.uuid4().hex}:"

    @pytest.fixture
    def server(self, prefix: str, shared_redis_url: str) -> Iterator[RedisCache]:
        cache = RedisCache(build_redis(shared_redis_url), prefix=prefix, near_ttl=30)
        with attached(cache, shared_redis_url):
            yield cache

    @pytest.fixture
    def other(self, prefix: str, shared_redis_url: str) -> RedisCache:
        return RedisCache(build_redis(shared_redis_url), prefix=prefix)

    def test_an_entry_read_is_served_from_memory(
        self, server: RedisCache, shared_redis: redis.Redis, prefix: str
    ) -> None:
        server.set("key", "first")
        assert server.get("key") == "first"
        # Changed behind the cache's back (no invalidation): memory still answers.
        shared_redis.set(f"{prefix}k:key", b'"changed"', keepttl=True)
        assert server.get("key") == "first"

    def test_memory_keeps_an_entry_no_longer_than_redis_does(self, server: RedisCache) -> None:
        server.set("short", "v", ttl=SHORT_TTL)
        assert server.get("short") == "v"
        time.sleep(SHORT_TTL + 0.1)
        assert server.get("short") is MISSING

    @pytest.mark.parametrize("write", ["set", "delete", "invalidate_tags", "clear"])
    def test_a_write_of_another_process_reaches_memory(
        self, server: RedisCache, other: RedisCache, write: str
    ) -> None:
        server.set("key", "old", tags=["tag"])
        assert server.get("key") == "old"
        if write == "set":
            other.set("key", "new")
        elif write == "delete":
            other.delete("key")
        elif write == "invalidate_tags":
            other.invalidate_tags("tag")
        else:
            other.clear()
        expected = "new" if write == "set" else MISSING
        support.wait_for(lambda: server.get("key") == expected, timeout=3, what="the write")

    def test_a_read_that_raced_an_invalidation_is_not_kept(
        self, server: RedisCache, other: RedisCache, shared_redis: redis.Redis, prefix: str
    ) -> None:
        """A value read while an invalidation came in may be the invalidated one: the next read
        goes to Redis again."""
        server.set("key", "old")
        stale_epoch = server._near.epoch  # the race, made exact:
        server._near.drop(["some other key"])  # an invalidation arrives, then the read
        server._near.keep(f"{prefix}k:key", b'"old"', stale_epoch, 30_000)
        shared_redis.set(f"{prefix}k:key", b'"new"', keepttl=True)
        assert server.get("key") == "new"

    def test_nothing_is_kept_while_the_channel_is_lost(self, tmp_path: Path) -> None:
        """Without its subscription a process could miss an invalidation, so it forgets what it
        kept and keeps nothing until it has subscribed again."""
        private = support.PrivateRedis(tmp_path)
        private.start()
        try:
            cache = RedisCache(build_redis(private.url), prefix="t:", near_ttl=30, retry_after=0.2)
            raw = redis.Redis.from_url(private.url)
            with attached(cache, private.url):
                cache.set("key", "old")
                assert cache.get("key") == "old"
                raw.client_kill_filter(_type="pubsub")
                # The invalidation below is lost with the channel; memory must not answer.
                raw.set("t:k:key", b'"new"', keepttl=True)
                support.wait_for(lambda: cache.get("key") == "new", timeout=3, what="a reread")
                support.wait_for(lambda: cache.memory_tier_live, timeout=5, what="resubscribed")
                assert cache.get("key") == "new"
                raw.set("t:k:key", b'"newer"', keepttl=True)
                assert cache.get("key") == "new"  # kept again once subscribed
            raw.close()
        finally:
            private.stop()
