"""Every Redis-backed component through a Redis restart: while Redis is down its calls fail
fast (or, for the cache, miss); after Redis comes back *empty*, the very first calls succeed
although every pooled connection died (each client retries once on a fresh connection); and a
command repeated after its reply was lost is not applied twice.

Each test owns a redis-server (`private_redis`) that it kills and starts again on the same port.
A lost reply is made by `ReplyDropper`, a TCP proxy in front of that server which lets one
command through and closes the client's connection instead of passing its reply back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.eventlog.redis import MIRROR_LEAD, RedisEventLog
from conduit.core.runs.events import RunEvent
from conduit.core.runs.limits_redis import RedisLimiter
from conduit.core.runs.stop_redis import RedisStopRegistry
from conduit.errors import RunEventsLost
from conduit.infra.cache import MISSING, RedisCache
from conduit.infra.redis import build_async_redis, build_redis
from tests import support

FAST = 0.5  # seconds: a call while Redis is down fails (or misses) within this
POOLED = 8  # connections each pool holds when Redis goes away
SCENARIO_TIMEOUT = 60


def restart(server: support.PrivateRedis) -> None:
    """Kill Redis and start it again, empty, on the same port."""
    server.stop()
    server.start()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT))


async def fails_fast(call: Callable[[], Awaitable[Any]]) -> Exception:
    began = time.monotonic()
    with pytest.raises(redis.RedisError) as failure:
        await call()
    assert time.monotonic() - began < FAST
    return failure.value


async def burst(call: Callable[[int], Awaitable[Any]], count: int = POOLED) -> list[Any]:
    """`count` concurrent calls: each takes a pooled connection of its own."""
    return list(await asyncio.gather(*(call(i) for i in range(count))))


class ReplyDropper:
    """A TCP proxy to Redis that can lose one reply: armed with a command name, it passes the
    next request holding it on to Redis (which applies it) and then, instead of passing the
    reply back, closes the client's connection. Everything else goes through untouched."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._armed: bytes | None = None
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def drop_next_reply_to(self, command: str) -> None:
        self._armed = command.upper().encode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self._target)
        losing = False

        async def requests() -> None:
            nonlocal losing
            while data := await reader.read(65536):
                if self._armed is not None and self._armed in data.upper():
                    self._armed, losing = None, True
                upstream.write(data)
                await upstream.drain()

        async def replies() -> None:
            while data := await upstream_reader.read(65536):
                if losing:
                    self.dropped += 1
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(replies())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except Exception:
            pass
        finally:
            for task in tasks:
                task.cancel()
            writer.close()
            upstream.close()


def event_log(url: str, mode: str = "plain", *, prefix: str | None = None) -> RedisEventLog:
    """An event log built as `core/runs/backends.py` builds it: `plain` (a reader, or a writer
    of neither kind), `mirror` (the inline executor's server), `adopt` (a Celery worker)."""
    return RedisEventLog(
        build_async_redis(url, socket_timeout=5.0),
        prefix=prefix or f"restart:{uuid.uuid4().hex}:run:",
        mirror=mode == "mirror",
        adopt=mode == "adopt",
        batches=build_async_redis(url, socket_timeout=None),
    )


@contextlib.asynccontextmanager
async def writer_and_reader(
    url: str, mode: str, *, reader_url: str | None = None
) -> AsyncIterator[tuple[RedisEventLog, RedisEventLog]]:
    """A run's writer (`mode`) and a reader of the same logs in another process (on
    `reader_url`, else `url`); both closed afterwards."""
    writer = event_log(url, mode)
    reader = event_log(reader_url or url, prefix=writer._prefix)
    try:
        yield writer, reader
    finally:
        await writer.aclose()
        await reader.aclose()


WRITERS = pytest.mark.parametrize("mode", ["plain", "mirror", "adopt"])
KEEPING_WRITERS = pytest.mark.parametrize("mode", ["mirror", "adopt"])


async def read_all(log: EventLog, task_id: str) -> list[RunEvent]:
    return [event async for event in log.follow(task_id)]


def numbers(events: list[RunEvent]) -> list[int]:
    return [event.seq for event in events]


class TestCache:
    def test_the_first_reads_and_writes_after_a_restart_use_redis(
        self, private_redis: support.PrivateRedis, caplog: pytest.LogCaptureFixture
    ) -> None:
        cache = RedisCache(build_redis(private_redis.url), prefix="restart:")

        def read(i: int) -> Any:
            return cache.get(f"key-{i}")

        async def fill_the_pool() -> None:
            for i in range(POOLED):
                cache.set(f"key-{i}", i)
            assert await burst(lambda i: asyncio.to_thread(read, i)) == list(range(POOLED))

        asyncio.run(fill_the_pool())
        restart(private_redis)
        with caplog.at_level(logging.WARNING, logger="conduit.infra.cache"):

            async def after() -> None:
                assert await burst(lambda i: asyncio.to_thread(read, i)) == [MISSING] * POOLED

            asyncio.run(after())
            cache.set("key-0", "again")
            assert cache.get("key-0") == "again"
        assert cache.available
        assert not [r for r in caplog.records if "unavailable" in r.getMessage()]

    def test_reads_on_the_loop_miss_fast_while_down_and_use_redis_at_once_after(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            cache = RedisCache(build_redis(private_redis.url), prefix="restart:", retry_after=0.2)
            cache.attach_async(build_async_redis(private_redis.url, socket_timeout=0.5))
            try:
                for i in range(POOLED):
                    cache.set(f"key-{i}", i)
                assert await burst(lambda i: cache.aget(f"key-{i}")) == list(range(POOLED))

                private_redis.stop()
                began = time.monotonic()
                assert await cache.aget("key-0") is MISSING
                assert time.monotonic() - began < FAST
                private_redis.start()
                await asyncio.to_thread(
                    support.wait_for, lambda: cache.available, timeout=5, what="retry window"
                )
                cache.set("key-0", "again")
                assert await burst(lambda i: cache.aget("key-0")) == ["again"] * POOLED
            finally:
                await cache.detach_async()

        run(scenario)


class TestStopRegistry:
    def test_fails_fast_while_down_and_the_first_calls_after_a_restart_succeed(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            stops = RedisStopRegistry(build_async_redis(private_redis.url))
            try:
                tasks = [uuid.uuid4().hex for _ in range(POOLED)]
                await burst(lambda i: stops.register(tasks[i], "owner", ttl=60))

                private_redis.stop()
                error = await fails_fast(lambda: stops.register("t", "owner", ttl=60))
                assert isinstance(error, redis.ConnectionError)
                await stops.forget(tasks[0])  # cleanup at a run's end: skipped, not raised
                private_redis.start()

                await burst(lambda i: stops.register(tasks[i], "owner", ttl=60))
                assert (
                    await burst(lambda i: stops.request_stop(tasks[i], "owner")) == [True] * POOLED
                )
                assert await stops.is_stop_requested(tasks[0])
            finally:
                await stops.aclose()

        run(scenario)

    def test_a_waiting_run_still_hears_a_stop_requested_after_a_restart(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            stops = RedisStopRegistry(build_async_redis(private_redis.url))
            requester = RedisStopRegistry(build_async_redis(private_redis.url))
            try:
                task = uuid.uuid4().hex
                waiting = asyncio.ensure_future(stops.wait_for_stop(task))
                await asyncio.sleep(0.5)  # the poller is reading flags
                restart(private_redis)
                await requester.register(task, "owner", ttl=60)
                assert await requester.request_stop(task, "owner")
                await asyncio.wait_for(waiting, timeout=3)
            finally:
                await stops.aclose()
                await requester.aclose()

        run(scenario)


class TestLimiter:
    def test_fails_fast_while_down_and_the_first_calls_after_a_restart_succeed(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            limiter = RedisLimiter(build_async_redis(private_redis.url))
            try:
                assert (
                    await burst(
                        lambda i: limiter.acquire("app", limit=POOLED, ttl=60, holder=f"h{i}")
                    )
                    == [True] * POOLED
                )

                private_redis.stop()
                await fails_fast(lambda: limiter.acquire("app", limit=99, ttl=60, holder="x"))
                await fails_fast(lambda: limiter.hit("key", limit=99, window=60))
                private_redis.start()

                # Empty again: the slots are free, and the scripts are loaded anew.
                assert (
                    await burst(
                        lambda i: limiter.acquire("app", limit=POOLED, ttl=60, holder=f"n{i}")
                    )
                    == [True] * POOLED
                )
                assert (
                    await burst(lambda i: limiter.hit("key", limit=POOLED, window=60))
                    == [0.0] * POOLED
                )
                await limiter.release("app", "n0")
            finally:
                await limiter.aclose()

        run(scenario)

    def test_a_hit_whose_reply_was_lost_is_counted_once(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            proxy = ReplyDropper(private_redis.port)
            await proxy.start()
            limiter = RedisLimiter(build_async_redis(proxy.url))
            try:
                proxy.drop_next_reply_to("EVALSHA")
                assert await limiter.hit("key", limit=2, window=60) == 0.0
                assert proxy.dropped == 1
                assert await limiter.hit("key", limit=2, window=60) == 0.0  # the second of two
                assert await limiter.hit("key", limit=2, window=60) > 0  # the third is refused
            finally:
                await limiter.aclose()
                await proxy.stop()

        run(scenario)


class TestEventLog:
    @WRITERS
    def test_the_first_calls_after_a_restart_succeed(
        self, private_redis: support.PrivateRedis, mode: str
    ) -> None:
        async def scenario() -> None:
            async with writer_and_reader(private_redis.url, mode) as (log, reader):
                runs = [uuid.uuid4().hex for _ in range(POOLED)]
                await burst(lambda i: log.create(runs[i], meta={"n": str(i)}))
                await burst(lambda i: log.append(runs[i], "message", {"i": i}))
                # Followers elsewhere, each blocked in XREAD on a pooled connection of its own.
                assert (
                    await burst(lambda i: reader.read(runs[i], after=1, wait=0.3)) == [[]] * POOLED
                )

                restart(private_redis)

                fresh = [uuid.uuid4().hex for _ in range(POOLED)]
                await burst(lambda i: log.create(fresh[i], meta={"n": str(i)}))
                await burst(lambda i: log.append(fresh[i], "message", {"i": i}))
                assert await burst(lambda i: reader.meta(fresh[i])) == [
                    {"n": str(i)} for i in range(POOLED)
                ]
                assert (
                    await burst(lambda i: reader.read(fresh[i], after=1, wait=0.3)) == [[]] * POOLED
                )
                await burst(lambda i: log.close(fresh[i]))
                read = await burst(lambda i: read_all(reader, fresh[i]))
                assert [numbers(events) for events in read] == [[1]] * POOLED

        run(scenario)

    def test_calls_fail_fast_while_redis_is_down(self, private_redis: support.PrivateRedis) -> None:
        async def scenario() -> None:
            log = event_log(private_redis.url)
            try:
                task = uuid.uuid4().hex
                await log.create(task, meta={"n": "1"})
                private_redis.stop()
                await fails_fast(lambda: log.create("down", meta={}))
                await fails_fast(lambda: log.meta(task))
                await fails_fast(lambda: log.read(task, after=0, wait=1))
                await fails_fast(lambda: log.append(task, "message", {"i": 1}))
            finally:
                private_redis.start()
                await log.aclose()

        run(scenario)

    def test_a_reader_fails_fast_when_redis_goes_away_under_it(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            log = event_log(private_redis.url)
            try:
                task = uuid.uuid4().hex
                await log.create(task)
                await log.append(task, "message", {"i": 1})
                reading = asyncio.ensure_future(log.read(task, after=1, wait=4))
                await asyncio.sleep(0.3)  # blocked in XREAD
                began = time.monotonic()
                private_redis.stop()
                with pytest.raises(redis.RedisError):
                    await reading
                assert time.monotonic() - began < FAST
            finally:
                private_redis.start()
                await log.aclose()

        run(scenario)

    def test_a_writer_without_a_copy_refuses_to_go_on_in_a_stream_redis_lost(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            log = event_log(private_redis.url)
            try:
                task = uuid.uuid4().hex
                await log.create(task)
                await log.extend(task, "message", [{"i": 1}, {"i": 2}])
                restart(private_redis)
                with pytest.raises(RunEventsLost):
                    await log.append(task, "message", {"i": 3})
                # Not reborn with a gap: readers anywhere find no run rather than events 3...
                assert not redis.Redis.from_url(private_redis.url).exists(log._stream(task))
            finally:
                await log.aclose()

        run(scenario)

    @KEEPING_WRITERS
    def test_a_run_outlives_an_outage_and_is_written_again_whole(
        self, private_redis: support.PrivateRedis, mode: str
    ) -> None:
        async def scenario() -> None:
            async with writer_and_reader(private_redis.url, mode) as (log, reader):
                task = uuid.uuid4().hex
                # Created where it runs (inline), or by the API server for a worker (celery).
                await (log if mode == "mirror" else reader).create(task, meta={"app_id": "a"})
                for i in range(1, 4):
                    await log.append(task, "message", {"i": i})
                await asyncio.sleep(0.2)  # written behind: in Redis now
                private_redis.stop()
                for i in range(4, 8):  # the run goes on
                    await log.append(task, "message", {"i": i})
                if mode == "mirror":  # and its readers here read the mirror
                    events = await log.read(task, after=0, wait=0) or []
                    assert numbers(events) == list(range(1, 8))
                private_redis.start()  # empty
                for i in range(8, 10):
                    await log.append(task, "message", {"i": i})
                await log.close(task)

                # Another process finds the whole run, each event once, and its meta.
                events = await read_all(reader, task)
                assert numbers(events) == list(range(1, 10))
                assert [event.payload["i"] for event in events] == list(range(1, 10))
                assert await reader.meta(task) == {"app_id": "a"}

        run(scenario)

    @KEEPING_WRITERS
    def test_a_run_closed_during_an_outage_reaches_redis_when_it_returns(
        self, private_redis: support.PrivateRedis, mode: str
    ) -> None:
        async def scenario() -> None:
            async with writer_and_reader(private_redis.url, mode) as (log, reader):
                task = uuid.uuid4().hex
                await (log if mode == "mirror" else reader).create(task)
                await log.append(task, "message", {"i": 1})
                private_redis.stop()
                await log.append(task, "message", {"i": 2})
                began = time.monotonic()
                closing = asyncio.ensure_future(log.close(task))
                await asyncio.sleep(1.0)
                private_redis.start()
                await closing  # waited for Redis, which came back within its wait
                assert time.monotonic() - began < 6
                assert numbers(await read_all(reader, task)) == [1, 2]

        run(scenario)

    @KEEPING_WRITERS
    def test_a_writer_runs_at_most_its_lead_ahead_of_redis_then_waits_for_it(
        self, private_redis: support.PrivateRedis, mode: str
    ) -> None:
        """While Redis is down a run goes on for `MIRROR_LEAD` events (its readers here see
        them); its next append waits for Redis, and returns once Redis is back."""

        async def scenario() -> None:
            async with writer_and_reader(private_redis.url, mode) as (log, reader):
                task = uuid.uuid4().hex
                await (log if mode == "mirror" else reader).create(task)
                await log.append(task, "message", {"i": 1})
                await asyncio.sleep(0.2)  # written behind: in Redis now
                private_redis.stop()
                for first in range(2, MIRROR_LEAD + 2, 64):  # events 2 .. MIRROR_LEAD + 1
                    payloads = [{"i": i} for i in range(first, first + 64)]
                    await asyncio.wait_for(log.extend(task, "message", payloads), 1)
                waiting = asyncio.ensure_future(log.append(task, "message", {"i": 0}))
                await asyncio.sleep(1.0)
                assert not waiting.done()  # one more would put Redis MIRROR_LEAD + 1 behind
                private_redis.start()  # empty: the run is written again whole
                assert (await asyncio.wait_for(waiting, 10)).seq == MIRROR_LEAD + 2
                await log.close(task)
                events = await read_all(reader, task)
                assert numbers(events) == list(range(1, MIRROR_LEAD + 3))

        run(scenario)

    def test_a_takers_events_reach_readers_past_what_the_dead_writer_wrote(
        self, private_redis: support.PrivateRedis
    ) -> None:
        """An inline run's server showed its readers events 4-6 and died before writing them
        behind (its writes linger): the taker's events are numbered past anything it may have
        shown, so a follower resuming from event 6 gets them, and one from the start gets the
        run as Redis has it, then them."""

        async def scenario() -> None:
            async with writer_and_reader(private_redis.url, "mirror") as (log, taker):
                task = uuid.uuid4().hex
                await log.create(task)
                for i in range(1, 4):
                    await log.append(task, "message", {"i": i})
                await asyncio.sleep(0.2)  # written behind: in Redis now
                for i in range(4, 7):
                    await log.append(task, "message", {"i": i})
                shown = await log.read(task, after=0, wait=0) or []
                assert numbers(shown) == [1, 2, 3, 4, 5, 6]
                await log.release(task)  # what kill -9 does: nothing more reaches Redis
                ended = await taker.take_over(
                    task, [("message_replace", {"answer": "123"}), ("error", {"code": "x"})]
                )
                await taker.close(task)
                assert numbers(ended) == [MIRROR_LEAD + 4, MIRROR_LEAD + 5]
                resumed = [event async for event in taker.follow(task, after=6)]
                assert [(e.seq, e.event) for e in resumed] == [
                    (MIRROR_LEAD + 4, "message_replace"), (MIRROR_LEAD + 5, "error")
                ]  # fmt: skip
                assert numbers(await read_all(log, task)) == [1, 2, 3, *numbers(ended)]

        run(scenario)

    def test_a_worker_adopts_a_run_whose_first_append_finds_redis_down(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            async with writer_and_reader(private_redis.url, "adopt") as (worker, api):
                task = uuid.uuid4().hex
                await api.create(task, meta={"app_id": "a"})  # the API server creates the log
                private_redis.stop()
                for i in range(1, 4):  # the run starts while Redis is down: it goes on
                    await worker.append(task, "message", {"i": i})
                private_redis.start()  # empty: the meta is gone with it
                await worker.append(task, "message", {"i": 4})
                await worker.close(task)
                events = await read_all(api, task)
                assert [event.payload["i"] for event in events] == [1, 2, 3, 4]
                assert numbers(events) == [1, 2, 3, 4]
                assert await api.meta(task) is None  # the API asks the database instead

        run(scenario)

    def test_a_worker_adopts_a_run_whose_log_redis_lost_before_it_started(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            async with writer_and_reader(private_redis.url, "adopt") as (worker, api):
                task = uuid.uuid4().hex
                await api.create(task, meta={"app_id": "a"})
                restart(private_redis)  # the run was queued; its log is gone
                await worker.append(task, "message", {"i": 1})
                await worker.close(task)
                assert numbers(await read_all(api, task)) == [1]

        run(scenario)

    @WRITERS
    def test_an_append_whose_reply_was_lost_is_written_once(
        self, private_redis: support.PrivateRedis, mode: str
    ) -> None:
        async def scenario() -> None:
            proxy = ReplyDropper(private_redis.port)
            await proxy.start()
            try:
                async with writer_and_reader(proxy.url, mode, reader_url=private_redis.url) as (
                    log,
                    reader,
                ):
                    task = uuid.uuid4().hex
                    await log.create(task)
                    await log.append(task, "message", {"i": 1})
                    await asyncio.sleep(0.2)
                    proxy.drop_next_reply_to("XADD")
                    await log.extend(task, "message", [{"i": 2}, {"i": 3}])
                    await asyncio.sleep(0.2)
                    await log.append(task, "message", {"i": 4})
                    await log.close(task)
                    assert proxy.dropped == 1
                    events = await read_all(reader, task)
                    assert numbers(events) == [1, 2, 3, 4]
                    assert [event.payload["i"] for event in events] == [1, 2, 3, 4]
            finally:
                await proxy.stop()

        run(scenario)

    def test_a_close_whose_reply_was_lost_closes_once(
        self, private_redis: support.PrivateRedis
    ) -> None:
        async def scenario() -> None:
            proxy = ReplyDropper(private_redis.port)
            await proxy.start()
            log = event_log(proxy.url)
            try:
                task = uuid.uuid4().hex
                await log.create(task)
                await log.append(task, "message", {"i": 1})
                proxy.drop_next_reply_to("XADD")
                await log.close(task)
                assert proxy.dropped == 1
                entries = redis.Redis.from_url(private_redis.url).xrange(log._stream(task))
                assert [entry_id for entry_id, _ in entries] == [b"1-0", b"1-1"]
            finally:
                await log.aclose()
                await proxy.stop()

        run(scenario)


def test_every_client_retries_a_dead_connection_once_and_not_a_timeout(
    private_redis: support.PrivateRedis,
) -> None:
    """The policy itself: one retry on a fresh connection for a dead one, none for a hung
    Redis (a second wait would double the caller's, and the command may have been applied)."""
    client = build_redis(private_redis.url, socket_timeout=0.3)
    client.set("k", "v")
    assert private_redis.process is not None
    pid = private_redis.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.get("k")
        assert time.monotonic() - began < 0.3 * 1.9  # one wait, not two
    finally:
        os.kill(pid, signal.SIGCONT)
    assert client.get("k") == b"v"

    async def asynchronous() -> None:
        aclient: aioredis.Redis = build_async_redis(private_redis.url, socket_timeout=0.3)
        try:
            await aclient.set("k", "v")
            restart(private_redis)
            assert await aclient.get("k") is None  # the dead connection retried on a new one
        finally:
            await aclient.aclose()

    run(asynchronous)
