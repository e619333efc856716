"""`GroupCommit` on a real Redis: replies in order per caller, a deadline per round trip on a
client without a socket timeout, and the linger that gathers commands into one pipeline."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from conduit.infra.redis import GroupCommit, build_async_redis


def test_callers_get_their_own_replies_and_a_late_round_trip_times_out(redis_url: str) -> None:
    async def scenario() -> None:
        client = build_async_redis(redis_url, socket_timeout=None)
        batch = GroupCommit(client, timeout=0.3)
        key = f"test:{uuid.uuid4().hex}"
        try:
            first, second = await asyncio.gather(
                batch.run(lambda pipe: pipe.incr(key)),
                batch.run(lambda pipe: (pipe.incr(key), pipe.get(key))),
            )
            assert first == [1]
            assert second == [2, b"2"]
            # BLPOP on an empty list holds this connection's reply for 2 s: past the deadline,
            # which fails as Redis's own timeout (what the API answers with a 503).
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                await batch.run(lambda pipe: pipe.blpop([f"{key}:empty"], timeout=2))
            assert time.monotonic() - started < 1.5
            # The late connection was dropped, not reused: the next round trip is answered.
            assert await batch.run(lambda pipe: pipe.incr(key)) == [3]
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_lingering_batch_gathers_the_commands_of_its_wait(redis_url: str) -> None:
    async def scenario() -> None:
        client = build_async_redis(redis_url, socket_timeout=None)
        batch = GroupCommit(client, linger=0.1, timeout=5)
        key = f"test:{uuid.uuid4().hex}"
        sent: list[int] = []
        send = batch._send

        async def counting(pending: list) -> None:  # type: ignore[type-arg]
            sent.append(len(pending))
            await send(pending)

        batch._send = counting  # type: ignore[method-assign]
        try:
            started = time.monotonic()
            callers = [asyncio.create_task(batch.run(lambda pipe: pipe.incr(key)))]
            await asyncio.sleep(0.03)
            callers += [asyncio.create_task(batch.run(lambda pipe: pipe.incr(key)))]
            replies = await asyncio.gather(*callers)
            assert sorted(reply[0] for reply in replies) == [1, 2]
            assert sent == [2]  # the second came within the first one's linger
            assert time.monotonic() - started >= 0.1
        finally:
            await client.aclose()

    asyncio.run(scenario())
