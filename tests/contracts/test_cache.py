"""The cache contract: every backend behind `conduit.infra.cache.Cache` passes this one suite.

`MemoryCache` always runs; `RedisCache` runs whenever Redis answers (in both test modes). The
Redis backend shares one flushed Redis database per module and gives each test its own prefix,
so the tests neither see each other's keys nor use up the harness's Redis database numbers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from conduit.infra.cache import MISSING, Cache, MemoryCache, RedisCache, get_or_load
from conduit.infra.redis import build_async_redis, build_redis
from tests import support

SHORT_TTL = 0.2


@pytest.fixture(scope="module")
def shared_redis(shared_redis_url: str) -> Iterator[redis.Redis]:
    client = build_redis(shared_redis_url)
    yield client
    client.close()


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "memory":
        return MemoryCache()
    client: redis.Redis = request.getfixturevalue("shared_redis")
    return RedisCache(client, prefix=f"test:{uuid.uuid4().hex}:")


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
        async def scenario() -> None:
            if isinstance(cache, RedisCache) and attach == "attached":
                cache.attach_async(build_async_redis(request.getfixturevalue("shared_redis_url")))
            try:
                cache.set("key", {"n": [1, "é"]})
                cache.set("short", "v", ttl=SHORT_TTL)
                cache.set("gone", 1)
                cache.delete("gone")
                assert await cache.aget("key") == {"n": [1, "é"]}
                assert await cache.aget("never-set") is MISSING
                assert await cache.aget("gone") is MISSING
                assert await cache.aget("short") == "v"
                await asyncio.sleep(SHORT_TTL + 0.1)
                assert await cache.aget("short") is MISSING
            finally:
                if isinstance(cache, RedisCache):
                    await cache.detach_async()

        asyncio.run(scenario())

    def test_a_cache_attached_on_another_loop_reads_from_a_thread(
        self, cache: Cache, request: pytest.FixtureRequest
    ) -> None:
        if not isinstance(cache, RedisCache):
            pytest.skip("only a Redis cache attaches a client to a loop")
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
