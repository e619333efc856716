"""RedisCache through a Redis outage: requests keep working on the loader, writes are skipped,
and invalidations missed during the outage are replayed before Redis is used again.

Each test owns a redis-server (`private_redis`) that it stops and starts on the same port. A
restarted server has lost its data (`--save ""`), so to show that a missed invalidation is
replayed, a second RedisCache (another process, in effect) writes the stale entry into the
restarted server before the first cache is used again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
import redis

from conduit.infra.cache import MISSING, RedisCache, get_or_load
from conduit.infra.redis import build_async_redis, build_redis
from tests import support

PREFIX = "outage:"
RETRY_AFTER = 0.2
QUICK = 0.3  # seconds: "well under a second"


@pytest.fixture
def client(private_redis: support.PrivateRedis) -> Iterator[redis.Redis]:
    connection = build_redis(private_redis.url)
    yield connection
    connection.close()


@pytest.fixture
def cache(client: redis.Redis) -> RedisCache:
    return RedisCache(client, prefix=PREFIX, retry_after=RETRY_AFTER)


def other_process_cache(private_redis: support.PrivateRedis) -> RedisCache:
    """A second cache on the same Redis, as another server process would have."""
    return RedisCache(build_redis(private_redis.url), prefix=PREFIX, retry_after=RETRY_AFTER)


def timed(call):  # type: ignore[no-untyped-def]
    began = time.monotonic()
    result = call()
    return result, time.monotonic() - began


def wait_out_retry_window(cache: RedisCache) -> None:
    support.wait_for(lambda: cache.available, timeout=5, what="the retry window to pass")


class TestDuringTheOutage:
    def test_get_misses_quickly(
        self, cache: RedisCache, private_redis: support.PrivateRedis
    ) -> None:
        cache.set("key", "cached")
        assert cache.get("key") == "cached"
        private_redis.stop()

        for _ in range(3):  # the first call finds the outage, the next ones skip Redis
            value, seconds = timed(lambda: cache.get("key"))
            assert value is MISSING
            assert seconds < QUICK
        assert not cache.available

    def test_get_keeps_missing_quickly_after_the_retry_window(
        self, cache: RedisCache, private_redis: support.PrivateRedis
    ) -> None:
        private_redis.stop()
        cache.get("key")
        wait_out_retry_window(cache)
        value, seconds = timed(lambda: cache.get("key"))
        assert value is MISSING
        assert seconds < QUICK
        assert not cache.available  # the retry found Redis still down

    def test_set_is_skipped_without_error(
        self, cache: RedisCache, private_redis: support.PrivateRedis
    ) -> None:
        private_redis.stop()
        _, seconds = timed(lambda: cache.set("key", "value", tags=["t"]))
        assert seconds < QUICK
        assert cache.get("key") is MISSING

        private_redis.start()
        wait_out_retry_window(cache)
        assert cache.get("key") is MISSING  # the skipped write is not replayed later

    def test_get_or_load_serves_the_loader(
        self, cache: RedisCache, private_redis: support.PrivateRedis
    ) -> None:
        private_redis.stop()
        calls: list[int] = []

        def load() -> dict[str, int]:
            calls.append(1)
            return {"id": len(calls)}

        first, seconds = timed(lambda: get_or_load(cache, "key", load, tags=["t"]))
        assert first == {"id": 1}
        assert seconds < QUICK
        assert get_or_load(cache, "key", load) == {"id": 2}  # nothing cached: loaded again

    def test_outage_is_logged_once_not_per_call(
        self,
        cache: RedisCache,
        private_redis: support.PrivateRedis,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        private_redis.stop()
        with caplog.at_level(logging.WARNING, logger="conduit.infra.cache"):
            for _ in range(5):
                cache.get("key")
        warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 1


class TestMissedInvalidations:
    @pytest.mark.parametrize("kind", ["delete", "invalidate_tags"])
    @pytest.mark.parametrize("when", ["inside-retry-window", "after-retry-window"])
    def test_invalidation_missed_during_the_outage_is_replayed_before_redis_is_used_again(
        self,
        cache: RedisCache,
        client: redis.Redis,
        private_redis: support.PrivateRedis,
        kind: str,
        when: str,
    ) -> None:
        cache.set("app:1", {"name": "old"}, tags=["app-tag"])
        cache.set("app:2", {"name": "untouched"}, tags=["other-tag"])
        assert cache.get("app:1") == {"name": "old"}

        private_redis.stop()
        assert cache.get("app:1") is MISSING  # the outage is noticed
        if when == "after-retry-window":
            wait_out_retry_window(cache)  # the invalidation itself tries Redis and fails
        _, seconds = timed(
            (lambda: cache.delete("app:1"))
            if kind == "delete"
            else (lambda: cache.invalidate_tags("app-tag"))
        )
        assert seconds < QUICK

        # Redis comes back (empty); another process caches the entries again, one now stale.
        private_redis.start()
        other = other_process_cache(private_redis)
        other.set("app:1", {"name": "old"}, tags=["app-tag"])
        other.set("app:2", {"name": "untouched"}, tags=["other-tag"])
        assert client.exists(f"{PREFIX}k:app:1") == 1

        wait_out_retry_window(cache)
        assert cache.get("app:1") is MISSING  # replayed before this read
        assert client.exists(f"{PREFIX}k:app:1") == 0
        assert other.get("app:1") is MISSING  # gone for every process, not just this one
        assert cache.get("app:2") == {"name": "untouched"}

    def test_reads_on_the_loop_miss_quickly_and_come_after_the_replay(
        self, cache: RedisCache, client: redis.Redis, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            cache.attach_async(build_async_redis(private_redis.url, socket_timeout=0.5))
            try:
                cache.set("app:1", {"name": "old"}, tags=["app-tag"])
                assert await cache.aget("app:1") == {"name": "old"}

                private_redis.stop()
                began = time.monotonic()
                assert await cache.aget("app:1") is MISSING
                assert time.monotonic() - began < QUICK
                cache.invalidate_tags("app-tag")  # missed: Redis is down

                private_redis.start()
                other = other_process_cache(private_redis)
                other.set("app:1", {"name": "old"}, tags=["app-tag"])
                await asyncio.to_thread(wait_out_retry_window, cache)
                assert await cache.aget("app:1") is MISSING  # replayed before this read
                assert client.exists(f"{PREFIX}k:app:1") == 0
                other.set("app:1", {"name": "new"}, tags=["app-tag"])
                assert await cache.aget("app:1") == {"name": "new"}  # and on the loop again
            finally:
                await cache.detach_async()

        asyncio.run(scenario())

    def test_replay_happens_once(
        self,
        cache: RedisCache,
        client: redis.Redis,
        private_redis: support.PrivateRedis,
    ) -> None:
        cache.set("app:1", 1)
        private_redis.stop()
        cache.get("app:1")
        cache.delete("app:1")
        private_redis.start()
        wait_out_retry_window(cache)
        assert cache.get("app:1") is MISSING  # replays the delete

        cache.set("app:1", 2)  # a fresh value after the replay must survive later calls
        assert cache.get("app:1") == 2
        assert cache.get("app:1") == 2

    def test_clear_missed_during_the_outage_is_replayed(
        self,
        cache: RedisCache,
        private_redis: support.PrivateRedis,
    ) -> None:
        private_redis.stop()
        cache.get("key")
        cache.clear()
        private_redis.start()
        other_process_cache(private_redis).set("key", "stale")
        wait_out_retry_window(cache)
        assert cache.get("key") is MISSING


class TestAfterTheOutage:
    def test_cache_is_used_again_after_the_retry_window(
        self, cache: RedisCache, client: redis.Redis, private_redis: support.PrivateRedis
    ) -> None:
        private_redis.stop()
        cache.get("key")
        assert not cache.available
        private_redis.start()

        wait_out_retry_window(cache)
        cache.set("key", {"v": 1}, tags=["t"])
        assert cache.get("key") == {"v": 1}
        assert client.exists(f"{PREFIX}k:key") == 1
        assert client.sismember(f"{PREFIX}t:t", f"{PREFIX}k:key")

    def test_get_or_load_caches_again_after_recovery(
        self, cache: RedisCache, private_redis: support.PrivateRedis
    ) -> None:
        private_redis.stop()
        cache.get("key")
        private_redis.start()
        wait_out_retry_window(cache)

        calls: list[int] = []

        def load() -> str:
            calls.append(1)
            return "loaded"

        assert get_or_load(cache, "key", load) == "loaded"
        assert get_or_load(cache, "key", load) == "loaded"
        assert len(calls) == 1
