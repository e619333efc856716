"""The StopRegistry contract: `MemoryStopRegistry` and `RedisStopRegistry` pass this one suite.

The Redis backend runs whenever Redis answers (in both test modes), on one flushed Redis
database per module with a key prefix per test. Scenarios run under `asyncio.run`, each
building its registry inside its own loop (a redis.asyncio client belongs to one loop).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from conduit.core.runs.stop import StopRegistry
from conduit.core.runs.stop_memory import MemoryStopRegistry
from conduit.core.runs.stop_redis import RedisStopRegistry
from conduit.infra.redis import build_async_redis

PROMPT = 0.5  # the longest a waiting runner may take to notice a stop request


class Backend:
    """Builds registries of one backend; `peer()` is one for another thread or process."""

    def __init__(self, redis_url: str | None = None) -> None:
        self._redis_url = redis_url
        self._prefix = f"test:{uuid.uuid4().hex}:stop:"

    def make(self) -> StopRegistry:
        if self._redis_url is None:
            return MemoryStopRegistry()
        return RedisStopRegistry(build_async_redis(self._redis_url), prefix=self._prefix)

    def peer(self, registry: StopRegistry) -> StopRegistry:
        return registry if self._redis_url is None else self.make()

    def run(self, scenario: Callable[[StopRegistry], Awaitable[None]]) -> None:
        async def main() -> None:
            registry = self.make()
            try:
                await asyncio.wait_for(scenario(registry), timeout=30)
            finally:
                await registry.aclose()

        asyncio.run(main())


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend()
    return Backend(request.getfixturevalue("shared_redis_url"))


def new_task() -> str:
    return uuid.uuid4().hex


class TestOwnership:
    def test_the_owner_can_stop_its_run(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            assert not await registry.is_stop_requested(task)
            assert await registry.request_stop(task, "user-1") is True
            assert await registry.is_stop_requested(task)

        backend.run(scenario)

    def test_another_owner_cannot_stop_it(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            assert await registry.request_stop(task, "user-2") is False
            assert not await registry.is_stop_requested(task)

        backend.run(scenario)

    def test_an_unknown_run_cannot_be_stopped(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            assert await registry.request_stop(task, "user-1") is False
            assert not await registry.is_stop_requested(task)

        backend.run(scenario)

    def test_runs_are_independent(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            stopped, running = new_task(), new_task()
            await registry.register(stopped, "user-1", ttl=60)
            await registry.register(running, "user-1", ttl=60)
            assert await registry.request_stop(stopped, "user-1")
            assert not await registry.is_stop_requested(running)

        backend.run(scenario)

    def test_ownership_expires_after_its_ttl(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=0.2)
            await asyncio.sleep(0.4)
            assert await registry.request_stop(task, "user-1") is False
            assert not await registry.is_stop_requested(task)

        backend.run(scenario)

    def test_the_stop_flag_expires_with_the_owner(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=0.3)
            assert await registry.request_stop(task, "user-1")
            deadline = time.monotonic() + 3
            while await registry.is_stop_requested(task):
                assert time.monotonic() < deadline, "the stop flag never expired"
                await asyncio.sleep(0.05)

        backend.run(scenario)

    def test_forget_clears_owner_and_flag(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            assert await registry.request_stop(task, "user-1")
            await registry.forget(task)
            assert not await registry.is_stop_requested(task)
            assert await registry.request_stop(task, "user-1") is False
            await registry.forget(new_task())  # forgetting an unknown run is harmless

        backend.run(scenario)


class TestWaitForStop:
    def test_returns_promptly_after_a_request(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            waiter = asyncio.create_task(registry.wait_for_stop(task))
            await asyncio.sleep(0.3)
            assert not waiter.done()
            requested = time.monotonic()
            assert await registry.request_stop(task, "user-1")
            await asyncio.wait_for(waiter, timeout=2)
            assert time.monotonic() - requested < PROMPT

        backend.run(scenario)

    def test_returns_at_once_when_already_requested(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            assert await registry.request_stop(task, "user-1")
            started = time.monotonic()
            await registry.wait_for_stop(task)
            assert time.monotonic() - started < 0.1

        backend.run(scenario)

    def test_a_request_from_another_thread_wakes_the_waiter(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            waiter = asyncio.create_task(registry.wait_for_stop(task))
            await asyncio.sleep(0.1)
            requested_at: list[float] = []

            def api_thread() -> None:
                # The request comes from another loop, as the API's would in embedded mode.
                async def request() -> None:
                    other = backend.peer(registry)
                    try:
                        requested_at.append(time.monotonic())
                        assert await other.request_stop(task, "user-1")
                    finally:
                        if other is not registry:
                            await other.aclose()

                asyncio.run(request())

            thread = threading.Thread(target=api_thread)
            thread.start()
            try:
                await asyncio.wait_for(waiter, timeout=2)
            finally:
                await asyncio.to_thread(thread.join, 10)
            assert time.monotonic() - requested_at[0] < PROMPT

        backend.run(scenario)

    def test_several_waiters_all_wake(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            waiters = [asyncio.create_task(registry.wait_for_stop(task)) for _ in range(3)]
            await asyncio.sleep(0.1)
            assert await registry.request_stop(task, "user-1")
            await asyncio.wait_for(asyncio.gather(*waiters), timeout=2)

        backend.run(scenario)

    def test_a_wait_can_be_cancelled(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            waiter = asyncio.create_task(registry.wait_for_stop(task))
            await asyncio.sleep(0.1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert waiter.cancelled()
            # The registry still works for a later waiter.
            again = asyncio.create_task(registry.wait_for_stop(task))
            await asyncio.sleep(0.05)
            assert await registry.request_stop(task, "user-1")
            await asyncio.wait_for(again, timeout=2)

        backend.run(scenario)

    def test_a_refused_request_does_not_wake_the_waiter(self, backend: Backend) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            waiter = asyncio.create_task(registry.wait_for_stop(task))
            assert await registry.request_stop(task, "user-2") is False
            await asyncio.sleep(0.5)
            assert not waiter.done()
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter

        backend.run(scenario)


async def _waiting_run_with_its_poller_killed(
    registry: StopRegistry,
) -> tuple[str, asyncio.Task[None]]:
    """A registered run waiting for stop whose poller was then cancelled."""
    assert isinstance(registry, RedisStopRegistry)
    task = new_task()
    await registry.register(task, "user-1", ttl=60)
    waiter = asyncio.create_task(registry.wait_for_stop(task))
    await asyncio.sleep(0.1)
    poller = registry._poller
    assert poller is not None
    poller.cancel()  # however the poller ends, the waiter must not go deaf
    await asyncio.sleep(0)
    return task, waiter


class TestRedisPollerFailures:
    """The Redis registry's own safety nets: a stop is never missed because of its poller."""

    def test_a_dead_poller_is_replaced_and_a_remote_stop_still_arrives(
        self, shared_redis_url: str
    ) -> None:
        backend = Backend(shared_redis_url)

        async def scenario(registry: StopRegistry) -> None:
            task, waiter = await _waiting_run_with_its_poller_killed(registry)
            other = backend.make()  # another process's registry: no local wake-up
            try:
                assert await other.request_stop(task, "user-1")
            finally:
                await other.aclose()
            await asyncio.wait_for(waiter, timeout=3)

        backend.run(scenario)

    def test_a_local_stop_wakes_the_run_without_waiting_for_the_poller(
        self, shared_redis_url: str
    ) -> None:
        async def scenario(registry: StopRegistry) -> None:
            task, waiter = await _waiting_run_with_its_poller_killed(registry)
            assert isinstance(registry, RedisStopRegistry)
            registry._poller = asyncio.get_running_loop().create_future()  # a poller that hangs
            assert await registry.request_stop(task, "user-1")
            await asyncio.wait_for(waiter, timeout=0.2)

        Backend(shared_redis_url).run(scenario)

    def test_a_poller_that_fails_is_started_again_and_a_remote_stop_still_arrives(
        self, shared_redis_url: str
    ) -> None:
        backend = Backend(shared_redis_url)

        async def scenario(registry: StopRegistry) -> None:
            assert isinstance(registry, RedisStopRegistry)
            real_poll = registry._poll
            calls: list[int] = []

            async def failing_once() -> None:
                calls.append(1)
                if len(calls) == 1:
                    raise RuntimeError("the poller broke")
                await real_poll()

            registry._poll = failing_once  # type: ignore[method-assign]
            task = new_task()
            await registry.register(task, "user-1", ttl=60)
            waiter = asyncio.create_task(registry.wait_for_stop(task))
            other = backend.make()  # another process's registry: no local wake-up
            try:
                await asyncio.sleep(0.1)
                assert await other.request_stop(task, "user-1")
            finally:
                await other.aclose()
            await asyncio.wait_for(waiter, timeout=3)
            assert len(calls) >= 2

        backend.run(scenario)
