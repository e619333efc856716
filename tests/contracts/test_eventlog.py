"""The EventLog contract: `MemoryEventLog` and `RedisEventLog` pass this one suite.

The memory backend always runs; the Redis backend runs whenever Redis answers (in both test
modes), on one flushed Redis database per module with a key prefix per test. Async scenarios
run under `asyncio.run` (no pytest-asyncio): each builds its log inside its own event loop,
because a redis.asyncio client belongs to the loop that first uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

import orjson
import pytest

from conduit.core.runs.eventlog import (
    EventLog,
    EventLogFull,
    MemoryEventLog,
    RedisEventLog,
    RunClosed,
    RunNotFound,
)
from conduit.core.runs.events import Frames, RunEvent
from conduit.infra.redis import build_async_redis

SHORT_RETENTION = 0.3


class Backend:
    """Builds logs of one backend; `peer()` is another writer/reader of the same logs."""

    def __init__(
        self, name: str, redis_url: str | None = None, *, mirror: bool = False, adopt: bool = False
    ) -> None:
        self.name = name
        self._redis_url = redis_url
        self.prefix = f"test:{uuid.uuid4().hex}:run:"
        self.mirror = mirror
        self.adopt = adopt

    def make(self, retention: float = 600, *, mirror: bool | None = None) -> EventLog:
        if self._redis_url is None:
            return MemoryEventLog(retention=retention)
        # A short block so that the follow loop's "nothing came" path runs in these tests too.
        return RedisEventLog(
            build_async_redis(self._redis_url),
            batches=build_async_redis(self._redis_url, socket_timeout=None),
            prefix=self.prefix,
            retention=retention,
            block_ms=500,
            mirror=self.mirror if mirror is None else mirror,
            adopt=self.adopt,
        )

    def peer(self, log: EventLog) -> EventLog:
        """A log instance for another thread or process: the same object in memory."""
        return log if self._redis_url is None else self.make()

    def needs_writers_anywhere(self) -> None:
        """A scenario where another instance appends to a run this one created and reads: the
        mirror is for runs whose only writer is the instance that created them, adoption for
        runs whose only writer is the instance that first appended to them."""
        if self.mirror:
            pytest.skip("a mirrored run has one writer: the instance that created it")
        if self.adopt:
            pytest.skip("an adopted run has one writer: the instance that first appended")

    def run(self, scenario: Callable[[EventLog], Awaitable[None]], **options: Any) -> None:
        async def main() -> None:
            log = self.make(**options)
            try:
                await asyncio.wait_for(scenario(log), timeout=30)
            finally:
                await log.aclose()

        asyncio.run(main())


@pytest.fixture(params=["memory", "redis", "redis-mirror", "redis-adopt"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend("memory")
    url = request.getfixturevalue("shared_redis_url")
    return Backend(
        request.param,
        url,
        mirror=request.param == "redis-mirror",
        adopt=request.param == "redis-adopt",
    )


def new_task() -> str:
    return uuid.uuid4().hex


async def collect(log: EventLog, task_id: str, *, after: int = 0) -> list[RunEvent]:
    return [record async for record in log.follow(task_id, after=after)]


async def fill(log: EventLog, task_id: str, count: int, *, close: bool = True) -> None:
    await log.create(task_id)
    for n in range(1, count + 1):
        await log.append(task_id, "message", {"n": n})
    if close:
        await log.close(task_id)


def numbers(records: list[RunEvent]) -> list[int]:
    return [record.seq for record in records]


async def settle() -> None:
    """Give started readers a moment to reach their blocking wait, so what follows is live."""
    await asyncio.sleep(0.05)


class TestNumbering:
    def test_events_are_numbered_from_one_in_append_order(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            appended = [await log.append(task, "message", {"n": n}) for n in range(3)]
            assert numbers(appended) == [1, 2, 3]
            assert [r.task_id for r in appended] == [task] * 3
            await log.close(task)
            followed = await collect(log, task)
            assert followed == [RunEvent.of(task, n + 1, "message", {"n": n}) for n in range(3)]

        backend.run(scenario)

    def test_each_run_has_its_own_numbering(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            first, second = new_task(), new_task()
            await log.create(first)
            await log.create(second)
            await log.append(first, "message", {})
            await log.append(first, "message", {})
            assert (await log.append(second, "message", {})).seq == 1
            assert (await log.append(first, "message", {})).seq == 3

        backend.run(scenario)

    def test_payload_round_trips_as_json(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            payload = {"answer": 'é ✓ "quoted"', "n": 1.5, "items": [1, None, {"a": True}]}
            await log.create(task)
            await log.append(task, "message_end", payload)
            await log.close(task)
            (record,) = await collect(log, task)
            assert record.payload == payload
            assert record.event == "message_end"
            assert record.terminal

        backend.run(scenario)

    def test_a_second_writer_instance_continues_the_numbering(self, backend: Backend) -> None:
        backend.needs_writers_anywhere()

        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 2, close=False)
            restarted = backend.peer(log)
            try:
                assert (await restarted.append(task, "message", {})).seq == 3
                await restarted.close(task)
            finally:
                if restarted is not log:
                    await restarted.aclose()
            assert numbers(await collect(log, task)) == [1, 2, 3]

        backend.run(scenario)

    def test_a_writer_with_a_stale_view_neither_overwrites_nor_loses_events(
        self, backend: Backend
    ) -> None:
        backend.needs_writers_anywhere()

        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 1, close=False)
            other = backend.peer(log)
            try:
                assert (await other.append(task, "message", {"by": "other"})).seq == 2
                # `log` still believes seq 1 is the last one.
                assert (await log.append(task, "message", {"by": "log"})).seq == 3
                assert (await other.append(task, "message", {"by": "other"})).seq == 4
                await log.close(task)
            finally:
                if other is not log:
                    await other.aclose()
            records = await collect(log, task)
            assert numbers(records) == [1, 2, 3, 4]
            assert [r.payload.get("by") for r in records[1:]] == ["other", "log", "other"]

        backend.run(scenario)


class TestFollowFrom:
    def test_follow_from_zero_replays_everything(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 5)
            assert numbers(await collect(log, task)) == [1, 2, 3, 4, 5]

        backend.run(scenario)

    def test_follow_from_the_middle_yields_only_later_events(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 5)
            assert numbers(await collect(log, task, after=2)) == [3, 4, 5]

        backend.run(scenario)

    @pytest.mark.parametrize("after", [5, 9])
    def test_follow_from_or_past_the_end_of_a_closed_run_yields_nothing(
        self, backend: Backend, after: int
    ) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 5)
            assert await collect(log, task, after=after) == []

        backend.run(scenario)

    def test_follow_of_a_closed_run_without_events_ends_at_once(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 0)
            assert await collect(log, task) == []

        backend.run(scenario)


class TestLiveFollow:
    def test_a_reader_started_before_the_appends_sees_each_event_once_in_order(
        self, backend: Backend
    ) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            reader = asyncio.create_task(collect(log, task))
            await settle()
            for n in range(20):
                await log.append(task, "message", {"n": n})
                if n % 5 == 0:
                    await asyncio.sleep(0.01)
            await log.close(task)
            records = await reader
            assert numbers(records) == list(range(1, 21))
            assert [r.payload["n"] for r in records] == list(range(20))

        backend.run(scenario)

    def test_a_live_reader_gets_an_event_promptly(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            # Both backends' follow() are async generators, which can be closed deterministically.
            stream = cast(AsyncGenerator[RunEvent, None], log.follow(task))
            async with contextlib.aclosing(stream):
                first = asyncio.ensure_future(anext(stream))
                await settle()
                started = time.monotonic()
                await log.append(task, "message", {})
                assert (await first).seq == 1
                assert time.monotonic() - started < 0.25

        backend.run(scenario)

    def test_several_concurrent_readers_each_see_every_event(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            early = [asyncio.create_task(collect(log, task)) for _ in range(4)]
            await settle()
            for n in range(10):
                await log.append(task, "message", {"n": n})
            late = [asyncio.create_task(collect(log, task, after=a)) for a in (0, 4, 10)]
            for n in range(10, 15):
                await log.append(task, "message", {"n": n})
            await log.close(task)
            for records in await asyncio.gather(*early):
                assert numbers(records) == list(range(1, 16))
            assert [numbers(r) for r in await asyncio.gather(*late)] == [
                list(range(1, 16)),
                list(range(5, 16)),
                list(range(11, 16)),
            ]

        backend.run(scenario)

    def test_a_waiting_reader_ends_promptly_when_the_run_is_closed(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 2, close=False)
            reader = asyncio.create_task(collect(log, task))
            await settle()
            started = time.monotonic()
            await log.close(task)
            assert numbers(await reader) == [1, 2]
            assert time.monotonic() - started < 0.25

        backend.run(scenario)

    def test_a_reader_ahead_of_the_end_ends_when_the_run_is_closed(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 2, close=False)
            reader = asyncio.create_task(collect(log, task, after=7))
            await settle()
            await log.close(task)
            assert await asyncio.wait_for(reader, timeout=3) == []

        backend.run(scenario)

    def test_a_cancelled_reader_does_not_disturb_the_log(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            abandoned = asyncio.create_task(collect(log, task))
            await settle()
            abandoned.cancel()
            with pytest.raises(asyncio.CancelledError):
                await abandoned
            await fill(log, task, 3)
            assert numbers(await collect(log, task)) == [1, 2, 3]

        backend.run(scenario)

    def test_an_append_from_another_thread_wakes_a_reader(self, backend: Backend) -> None:
        backend.needs_writers_anywhere()

        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            reader = asyncio.create_task(collect(log, task))
            await settle()

            def runner_thread() -> None:
                # A runner with its own event loop, as a worker thread would have.
                async def produce() -> None:
                    writer = backend.peer(log)
                    try:
                        for n in range(5):
                            await writer.append(task, "message", {"n": n})
                        await writer.close(task)
                    finally:
                        if writer is not log:
                            await writer.aclose()

                asyncio.run(produce())

            thread = threading.Thread(target=runner_thread)
            thread.start()
            try:
                records = await asyncio.wait_for(reader, timeout=5)
            finally:
                await asyncio.to_thread(thread.join, 10)
            assert numbers(records) == [1, 2, 3, 4, 5]

        backend.run(scenario)

    def test_two_thousand_events_round_trip_in_order(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            count = 2000
            await log.create(task)
            live = asyncio.create_task(collect(log, task))
            await settle()
            for n in range(count):
                await log.append(task, "message", {"n": n, "text": "x" * 40})
            await log.close(task)
            replayed = await collect(log, task)
            for records in (await live, replayed):
                assert numbers(records) == list(range(1, count + 1))
                assert [r.payload["n"] for r in records] == list(range(count))

        backend.run(scenario)

    def test_extend_appends_in_order_one_number_each_and_followers_see_each_once(
        self, backend: Backend
    ) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            live = asyncio.create_task(collect(log, task))
            await settle()
            await log.append(task, "message", {"n": 0})
            added = await log.extend(task, "message", [{"n": 1}, b'{"n":2}', {"n": 3}])
            assert numbers(added) == [2, 3, 4]
            assert await log.extend(task, "message", [{"n": 4}]) == [
                RunEvent.of(task, 5, "message", {"n": 4})
            ]
            await log.append(task, "message_end", {"n": 5})
            await log.close(task)
            expected = [
                RunEvent.of(task, n + 1, "message_end" if n == 5 else "message", {"n": n})
                for n in range(6)
            ]
            assert await asyncio.wait_for(live, 5) == expected
            for after in range(7):
                assert await collect(log, task, after=after) == expected[after:]
            peer = backend.peer(log)
            try:
                assert await collect(peer, task, after=2) == expected[2:]
            finally:
                if peer is not log:
                    await peer.aclose()

        backend.run(scenario)


class TestRead:
    """`read()`: one batch of what is there, [] after waiting in vain, None at the end."""

    def test_a_read_returns_every_waiting_event_as_one_batch(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            for n in range(5):
                await log.append(task, "message", {"n": n})
            batch = await log.read(task, after=2, wait=1)
            assert batch is not None
            assert [(e.seq, e.payload["n"]) for e in batch] == [(3, 2), (4, 3), (5, 4)]
            # read_frames(): the same batch as one chunk, and where the next read goes on
            frames = await log.read_frames(task, after=2, wait=1)
            assert frames == Frames(5, b"".join(event.frame for event in batch))
            assert frames.data.startswith(b"id: 3\ndata: ")

        backend.run(scenario)

    def test_a_read_of_a_quiet_open_run_waits_then_returns_empty(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            started = time.monotonic()
            assert await log.read(task, after=0, wait=0.2) == []
            assert await log.read_frames(task, after=0, wait=0.2) == Frames(0, b"")
            assert 0.3 <= time.monotonic() - started < 4

        backend.run(scenario)

    def test_a_waiting_read_returns_as_soon_as_an_event_lands(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            reader = asyncio.create_task(log.read(task, after=0, wait=10))
            frames_reader = asyncio.create_task(log.read_frames(task, after=0, wait=10))
            await asyncio.sleep(0.1)
            await log.append(task, "message", {"n": 1})
            batch = await asyncio.wait_for(reader, timeout=2)
            assert batch is not None and [e.seq for e in batch] == [1]
            assert await asyncio.wait_for(frames_reader, timeout=2) == Frames(1, batch[0].frame)

        backend.run(scenario)

    def test_a_closed_run_read_to_its_end_returns_none(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            await log.append(task, "message", {"n": 1})
            await log.close(task)
            batch = await log.read(task, after=0, wait=1)
            assert batch is not None and [e.seq for e in batch] == [1]
            assert await log.read(task, after=1, wait=1) is None
            assert await log.read(task, after=7, wait=1) is None
            assert await log.read_frames(task, after=1, wait=1) is None
            with pytest.raises(RunNotFound):
                await log.read(new_task(), after=0, wait=1)
            with pytest.raises(RunNotFound):
                await log.read_frames(new_task(), after=0, wait=1)

        backend.run(scenario)

    def test_the_event_data_is_the_payloads_json(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            await log.append(task, "message", {"answer": "héllo", "n": [1, 2]})
            batch = await log.read(task, after=0, wait=1)
            assert batch is not None
            assert orjson.loads(batch[0].data) == {"answer": "héllo", "n": [1, 2]}
            assert batch[0].payload == {"answer": "héllo", "n": [1, 2]}

        backend.run(scenario)


class TestLifecycle:
    def test_an_unknown_run_raises_run_not_found_at_the_first_iteration(
        self, backend: Backend
    ) -> None:
        async def scenario(log: EventLog) -> None:
            stream = log.follow(new_task())  # creating the iterator is not yet an error
            with pytest.raises(RunNotFound):
                await anext(stream)
            assert await log.meta(new_task()) is None

        backend.run(scenario)

    def test_a_created_run_without_events_can_be_followed(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task)
            reader = asyncio.create_task(collect(log, task))
            await settle()
            assert not reader.done()
            await log.close(task)
            assert await reader == []

        backend.run(scenario)

    def test_meta_round_trips(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task, bare = new_task(), new_task()
            meta = {"owner": "end-user-1", "app_id": "app-é", "mode": "chat"}
            await log.create(task, meta=meta)
            await log.create(bare)
            assert await log.meta(task) == meta
            assert await log.meta(bare) == {}

        backend.run(scenario)

    def test_create_is_idempotent(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await log.create(task, meta={"owner": "u1"})
            await log.append(task, "message", {})
            await log.create(task, meta={"owner": "u1"})
            assert (await log.append(task, "message", {})).seq == 2
            assert await log.meta(task) == {"owner": "u1"}

        backend.run(scenario)

    def test_close_is_idempotent_and_ignores_unknown_runs(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 2)
            await log.close(task)
            await log.close(new_task())
            assert numbers(await collect(log, task)) == [1, 2]

        backend.run(scenario)

    def test_append_after_close_is_refused(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 1)
            with pytest.raises(RunClosed):
                await log.append(task, "message", {})
            with pytest.raises(RunClosed):
                await log.extend(task, "message", [{}, {}])
            peer = backend.peer(log)
            try:
                with pytest.raises(RunClosed):
                    await peer.append(task, "message", {})
                with pytest.raises(RunClosed):
                    await peer.extend(task, "message", [{}, {}])
            finally:
                if peer is not log:
                    await peer.aclose()

        backend.run(scenario)

    def test_append_to_an_unknown_run_is_refused(self, backend: Backend) -> None:
        if backend.adopt:
            pytest.skip(
                "an adopting writer (a worker) is given only runs that exist: one Redis "
                "knows nothing of, it lost (tests/contracts/test_redis_restart.py)"
            )

        async def scenario(log: EventLog) -> None:
            with pytest.raises(RunNotFound):
                await log.append(new_task(), "message", {})
            with pytest.raises(RunNotFound):
                await log.extend(new_task(), "message", [{}, {}])

        backend.run(scenario)

    def test_a_closed_run_is_forgotten_after_its_retention(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task, still_open = new_task(), new_task()
            await fill(log, task, 3)
            await fill(log, still_open, 1, close=False)
            assert numbers(await collect(log, task)) == [1, 2, 3]
            deadline = time.monotonic() + 5
            while await log.meta(task) is not None:
                assert time.monotonic() < deadline, "the closed run never expired"
                await asyncio.sleep(0.05)
            with pytest.raises(RunNotFound):
                await collect(log, task)
            # Retention starts at close: an open run stays.
            assert await log.meta(still_open) == {}
            assert (await log.append(still_open, "message", {})).seq == 2

        backend.run(scenario, retention=SHORT_RETENTION)

    def test_a_closed_run_is_kept_within_its_retention(self, backend: Backend) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 2)
            await asyncio.sleep(0.2)
            assert numbers(await collect(log, task)) == [1, 2]

        backend.run(scenario, retention=2)


class TestRedisEntries:
    @pytest.fixture
    def backend(self, shared_redis_url: str) -> Backend:
        return Backend("redis", shared_redis_url)

    def test_the_events_of_one_extend_share_a_stream_entry(
        self, backend: Backend, shared_redis_url: str
    ) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            raw = build_async_redis(shared_redis_url)
            try:
                await log.create(task)
                await log.extend(task, "message", [{"n": n} for n in range(1, 6)])
                await log.append(task, "message", {"n": 6})
                await log.close(task)
                # One entry for the five, one for the sixth, and the sentinel.
                assert await raw.xlen(f"{backend.prefix}{task}") == 3
                expected = [RunEvent.of(task, n, "message", {"n": n}) for n in range(1, 7)]
                for after in (0, 3, 5):
                    assert await collect(log, task, after=after) == expected[after:]
            finally:
                await raw.aclose()

        backend.run(scenario)


class TestRedisMirror:
    """The Redis log's local mirror: readers here skip Redis, readers elsewhere still see all."""

    @pytest.fixture
    def backend(self, shared_redis_url: str) -> Backend:
        return Backend("redis-mirror", shared_redis_url, mirror=True)

    def test_a_mirrored_run_is_in_redis_for_readers_of_other_instances(
        self, backend: Backend
    ) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            elsewhere = backend.make(mirror=False)
            try:
                await log.create(task)
                here = asyncio.create_task(collect(log, task))
                there = asyncio.create_task(collect(elsewhere, task))
                await settle()
                for n in range(4):
                    await log.append(task, "message", {"n": n})
                await log.close(task)
                expected = [RunEvent.of(task, n + 1, "message", {"n": n}) for n in range(4)]
                assert await asyncio.wait_for(here, 5) == expected
                assert await asyncio.wait_for(there, 5) == expected
            finally:
                await elsewhere.aclose()

        backend.run(scenario)

    def test_events_queued_behind_a_write_share_an_entry_and_read_back_from_any_point(
        self, backend: Backend, shared_redis_url: str
    ) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            elsewhere = backend.make(mirror=False)
            raw = build_async_redis(shared_redis_url)
            try:
                await fill(log, task, 50)
                expected = [RunEvent.of(task, n, "message", {"n": n}) for n in range(1, 51)]
                assert await collect(elsewhere, task) == expected
                assert await collect(elsewhere, task, after=7) == expected[7:]
                # Fewer stream entries than events (plus the sentinel): they were grouped.
                assert await raw.xlen(f"{backend.prefix}{task}") < 50
            finally:
                await elsewhere.aclose()
                await raw.aclose()

        backend.run(scenario)

    def test_a_reader_goes_on_from_redis_when_the_mirror_drops_the_run(
        self, backend: Backend
    ) -> None:
        async def scenario(log: EventLog) -> None:
            task = new_task()
            await fill(log, task, 2, close=False)
            reader = asyncio.create_task(collect(log, task))
            await settle()
            # What eviction from the mirror does (it holds a bounded number of runs).
            cast(RedisEventLog, log)._mirror.forget(task)  # type: ignore[union-attr]
            await log.append(task, "message", {"n": 3})
            await log.close(task)
            assert numbers(await asyncio.wait_for(reader, 5)) == [1, 2, 3]

        backend.run(scenario)


class TestMemoryBounds:
    """Bounds only the memory backend has (Redis holds whole runs until they expire)."""

    @staticmethod
    def run(scenario: Callable[[], Awaitable[None]]) -> None:
        asyncio.run(asyncio.wait_for(scenario(), timeout=30))

    def test_appending_beyond_the_event_cap_raises_instead_of_dropping(self) -> None:
        async def scenario() -> None:
            log = MemoryEventLog(max_events_per_run=3)
            task = new_task()
            await fill(log, task, 2, close=False)
            with pytest.raises(EventLogFull):  # all or none
                await log.extend(task, "message", [{}, {}])
            await log.append(task, "message", {})
            with pytest.raises(EventLogFull):
                await log.append(task, "error", {})
            await log.close(task)
            assert numbers(await collect(log, task)) == [1, 2, 3]

        self.run(scenario)

    def test_the_oldest_closed_run_is_evicted_first(self) -> None:
        async def scenario() -> None:
            log = MemoryEventLog(max_runs=3)
            open_run, closed_first, closed_second = new_task(), new_task(), new_task()
            await fill(log, open_run, 1, close=False)
            await fill(log, closed_first, 1)
            await fill(log, closed_second, 1)
            newcomer = new_task()
            await log.create(newcomer)
            assert await log.meta(closed_first) is None
            for kept in (open_run, closed_second, newcomer):
                assert await log.meta(kept) == {}

        self.run(scenario)

    def test_without_closed_runs_the_longest_idle_open_run_is_evicted(self) -> None:
        async def scenario() -> None:
            log = MemoryEventLog(max_runs=2)
            idle, busy = new_task(), new_task()
            await fill(log, idle, 1, close=False)
            await fill(log, busy, 1, close=False)
            reader = asyncio.create_task(collect(log, idle))
            await asyncio.sleep(0.05)
            await log.create(new_task())
            assert await log.meta(idle) is None
            assert await log.meta(busy) == {}
            # Its reader is not left waiting forever, and its runner learns of the loss.
            assert numbers(await asyncio.wait_for(reader, timeout=2)) == [1]
            with pytest.raises(RunNotFound):
                await log.append(idle, "message", {})

        self.run(scenario)

    def test_expired_runs_are_swept_without_being_read(self) -> None:
        async def scenario() -> None:
            log = MemoryEventLog(retention=0.05)
            for _ in range(10):
                await fill(log, new_task(), 1)
            await asyncio.sleep(0.1)
            await log.create(new_task())
            assert len(log._runs) == 1

        self.run(scenario)

    def test_a_cancelled_reader_leaves_no_waiter_behind(self) -> None:
        async def scenario() -> None:
            log = MemoryEventLog()
            task = new_task()
            await log.create(task)
            readers = [asyncio.create_task(collect(log, task)) for _ in range(3)]
            await asyncio.sleep(0.05)
            assert len(log._runs[task].waiters) == 3
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            assert log._runs[task].waiters == []

        self.run(scenario)

    def test_the_stored_payload_is_detached_from_the_callers_dict(self) -> None:
        async def scenario() -> None:
            log = MemoryEventLog()
            task = new_task()
            payload: dict[str, Any] = {"items": [1]}
            await log.create(task)
            await log.append(task, "message", payload)
            payload["items"].append(2)
            await log.close(task)
            (record,) = await collect(log, task)
            assert record.payload == {"items": [1]}

        self.run(scenario)
