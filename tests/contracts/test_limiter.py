"""The Limiter contract: `MemoryLimiter` and `RedisLimiter` pass this one suite.

The Redis backend runs whenever Redis answers (in both test modes), on one flushed Redis
database per module with a key prefix per test. Scenarios run under `asyncio.run`, each
building its limiter inside its own loop (a redis.asyncio client belongs to one loop).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from conduit.core.runs.limits import Limiter
from conduit.core.runs.limits_memory import MemoryLimiter
from conduit.core.runs.limits_redis import RedisLimiter
from conduit.infra.redis import build_async_redis

Scenario = Callable[[Limiter], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
def run(request: pytest.FixtureRequest) -> Callable[[Scenario], None]:
    """Runs a scenario against a fresh limiter of the backend."""
    redis_url = None if request.param == "memory" else request.getfixturevalue("shared_redis_url")
    prefix = f"test:{uuid.uuid4().hex}:limit:"

    def make() -> Limiter:
        if redis_url is None:
            return MemoryLimiter()
        return RedisLimiter(build_async_redis(redis_url), prefix=prefix)

    def drive(scenario: Scenario) -> None:
        async def main() -> None:
            limiter = make()
            try:
                await asyncio.wait_for(scenario(limiter), timeout=30)
            finally:
                await limiter.aclose()

        asyncio.run(main())

    return drive


class TestConcurrencySlots:
    def test_at_most_limit_holders_under_concurrent_acquire(
        self, run: Callable[[Scenario], None]
    ) -> None:
        async def scenario(limiter: Limiter) -> None:
            granted = await asyncio.gather(
                *(limiter.acquire("app", limit=5, ttl=30, holder=f"req-{n}") for n in range(50))
            )
            assert granted.count(True) == 5

        run(scenario)

    def test_release_frees_a_slot(self, run: Callable[[Scenario], None]) -> None:
        async def scenario(limiter: Limiter) -> None:
            assert await limiter.acquire("app", limit=2, ttl=30, holder="a")
            assert await limiter.acquire("app", limit=2, ttl=30, holder="b")
            assert not await limiter.acquire("app", limit=2, ttl=30, holder="c")
            await limiter.release("app", "a")
            assert await limiter.acquire("app", limit=2, ttl=30, holder="c")
            assert not await limiter.acquire("app", limit=2, ttl=30, holder="d")

        run(scenario)

    def test_a_leaked_slot_expires_after_its_ttl(self, run: Callable[[Scenario], None]) -> None:
        async def scenario(limiter: Limiter) -> None:
            assert await limiter.acquire("app", limit=1, ttl=0.3, holder="crashed")
            assert not await limiter.acquire("app", limit=1, ttl=30, holder="next")
            deadline = time.monotonic() + 3
            while not await limiter.acquire("app", limit=1, ttl=30, holder="next"):
                assert time.monotonic() < deadline, "the leaked slot never expired"
                await asyncio.sleep(0.05)

        run(scenario)

    def test_a_renewed_slot_outlives_its_first_ttl_and_lapses_without_renewal(
        self, run: Callable[[Scenario], None]
    ) -> None:
        async def scenario(limiter: Limiter) -> None:
            assert await limiter.acquire("app", limit=1, ttl=0.3, holder="live")
            for _ in range(4):  # a live run renews with its lease, past the first ttl
                await asyncio.sleep(0.15)
                await limiter.renew("app", holder="live", ttl=0.3)
            assert not await limiter.acquire("app", limit=1, ttl=30, holder="next")
            # Its executor died: no more renewals, the slot frees when the lease lapses.
            deadline = time.monotonic() + 3
            while not await limiter.acquire("app", limit=1, ttl=30, holder="next"):
                assert time.monotonic() < deadline, "the lapsed slot never freed"
                await asyncio.sleep(0.05)

        run(scenario)

    def test_free_in_is_the_time_until_the_first_slot_expires(
        self, run: Callable[[Scenario], None]
    ) -> None:
        async def scenario(limiter: Limiter) -> None:
            assert await limiter.free_in("app") == 0.0
            assert await limiter.acquire("app", limit=2, ttl=30, holder="late")
            assert await limiter.acquire("app", limit=2, ttl=4, holder="early")
            assert 3.0 < await limiter.free_in("app") <= 4.0
            await limiter.release("app", "early")
            assert 29.0 < await limiter.free_in("app") <= 30.0

        run(scenario)

    def test_releasing_a_non_holder_is_harmless(self, run: Callable[[Scenario], None]) -> None:
        async def scenario(limiter: Limiter) -> None:
            await limiter.release("app", "nobody")  # on an unknown key
            assert await limiter.acquire("app", limit=1, ttl=30, holder="a")
            await limiter.release("app", "nobody")
            assert not await limiter.acquire("app", limit=1, ttl=30, holder="b")

        run(scenario)

    def test_a_holder_acquiring_again_keeps_one_slot(self, run: Callable[[Scenario], None]) -> None:
        async def scenario(limiter: Limiter) -> None:
            assert await limiter.acquire("app", limit=2, ttl=30, holder="a")
            assert await limiter.acquire("app", limit=2, ttl=30, holder="a")
            assert await limiter.acquire("app", limit=2, ttl=30, holder="b")
            assert not await limiter.acquire("app", limit=2, ttl=30, holder="c")

        run(scenario)

    def test_keys_are_independent(self, run: Callable[[Scenario], None]) -> None:
        async def scenario(limiter: Limiter) -> None:
            assert await limiter.acquire("app-1", limit=1, ttl=30, holder="a")
            assert await limiter.acquire("app-2", limit=1, ttl=30, holder="b")
            assert not await limiter.acquire("app-1", limit=1, ttl=30, holder="c")

        run(scenario)


class TestSlidingWindow:
    def test_allows_limit_per_window_then_answers_a_wait(
        self, run: Callable[[Scenario], None]
    ) -> None:
        async def scenario(limiter: Limiter) -> None:
            for _ in range(3):
                assert await limiter.hit("key", limit=3, window=1.0) == 0.0
            wait = await limiter.hit("key", limit=3, window=1.0)
            assert 0 < wait <= 1.0
            # A denied request is not counted: the answer does not grow.
            assert 0 < await limiter.hit("key", limit=3, window=1.0) <= wait

        run(scenario)

    def test_the_wait_is_when_a_slot_frees(self, run: Callable[[Scenario], None]) -> None:
        async def scenario(limiter: Limiter) -> None:
            assert await limiter.hit("key", limit=2, window=0.6) == 0.0
            await asyncio.sleep(0.3)
            assert await limiter.hit("key", limit=2, window=0.6) == 0.0
            wait = await limiter.hit("key", limit=2, window=0.6)
            # The first hit leaves the window ~0.3 s from now, well before the second.
            assert 0.1 < wait < 0.45
            await asyncio.sleep(wait + 0.05)
            assert await limiter.hit("key", limit=2, window=0.6) == 0.0
            assert await limiter.hit("key", limit=2, window=0.6) > 0

        run(scenario)

    def test_concurrent_hits_allow_exactly_limit(self, run: Callable[[Scenario], None]) -> None:
        async def scenario(limiter: Limiter) -> None:
            waits = await asyncio.gather(
                *(limiter.hit("key", limit=5, window=10) for _ in range(40))
            )
            assert waits.count(0.0) == 5
            assert all(0 < w <= 10 for w in waits if w)

        run(scenario)

    def test_keys_are_independent(self, run: Callable[[Scenario], None]) -> None:
        async def scenario(limiter: Limiter) -> None:
            assert await limiter.hit("a", limit=1, window=10) == 0.0
            assert await limiter.hit("b", limit=1, window=10) == 0.0
            assert await limiter.hit("a", limit=1, window=10) > 0

        run(scenario)

    def test_slot_and_rate_keys_do_not_collide(self, run: Callable[[Scenario], None]) -> None:
        async def scenario(limiter: Limiter) -> None:
            assert await limiter.acquire("same", limit=1, ttl=30, holder="a")
            assert await limiter.hit("same", limit=1, window=10) == 0.0
            await limiter.release("same", "a")
            assert await limiter.acquire("same", limit=1, ttl=30, holder="b")

        run(scenario)
