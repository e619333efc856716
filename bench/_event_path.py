"""CPU per relayed event of Conduit's event path, without HTTP (the SSE benchmark's breakdown).

    .venv/bin/python bench/_event_path.py [--runs 50] [--events 2000] [--redis]

`runs` concurrent producers append `events` events each (Dify's `message` envelope, like the
runner's) and one reader per run turns them into SSE frames; the producer yields to the loop
before every event, as a runner does between two upstream reads. Printed: CPU microseconds per
event (this process, uvloop) for each way of carrying the events:

- `queue + frame`: an asyncio.Queue and `conduit.api.sse.frame` — the floor any relay pays;
- `MemoryEventLog.follow + frame`: Conduit's in-process log, read directly;
- `MemoryEventLog + event_stream`: the same through `conduit.api.sse.event_stream` (what the
  embedded server runs: a task and an `asyncio.wait` with the ping timeout per event);
- `RedisEventLog + event_stream` (`--redis`, Redis db 14, flushed before and after): the
  distributed server's path (an XADD round trip per append, XREAD BLOCK per reader).

Then the memory the in-process log keeps per event (tracemalloc).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conduit.api.sse import event_stream, frame  # noqa: E402
from conduit.core.runs.eventlog.memory import MemoryEventLog  # noqa: E402
from conduit.core.runs.events import RunEvent  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/14"


def payload(task_id: str, text: str) -> dict[str, Any]:
    message_id = str(uuid.uuid4())
    return {
        "event": "message",
        "conversation_id": str(uuid.uuid4()),
        "message_id": message_id,
        "created_at": int(time.time()),
        "task_id": task_id,
        "id": message_id,
        "answer": text,
    }


async def via_queue(runs: int, events: int) -> int:
    async def one() -> int:
        task_id = str(uuid.uuid4())
        q: asyncio.Queue[RunEvent | None] = asyncio.Queue()

        async def produce() -> None:
            for seq in range(1, events + 1):
                await asyncio.sleep(0)
                q.put_nowait(RunEvent.of(task_id, seq, "message", payload(task_id, " word")))
            q.put_nowait(None)

        async def frames() -> AsyncIterator[bytes]:
            while (event := await q.get()) is not None:
                yield frame(event)

        producer = asyncio.ensure_future(produce())
        size = 0
        async for chunk in frames():
            size += len(chunk)
        await producer
        return size

    return sum(await asyncio.gather(*(one() for _ in range(runs))))


async def via_log(log: Any, runs: int, events: int, wrap: bool) -> int:
    async def one() -> int:
        task_id = str(uuid.uuid4())
        await log.create(task_id, meta={"owner": "bench"})

        async def produce() -> None:
            for _ in range(events):
                await asyncio.sleep(0)
                await log.append(task_id, "message", payload(task_id, " word"))
            await log.close(task_id)

        producer = asyncio.ensure_future(produce())
        size = 0
        if wrap:
            async for chunk in event_stream(log, task_id, ping_interval=10.0):
                size += len(chunk)
        else:
            async for event in log.follow(task_id):
                size += len(frame(event))
        await producer
        return size

    return sum(await asyncio.gather(*(one() for _ in range(runs))))


async def measure(name: str, work: Callable[[], Awaitable[int]], total: int) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    await work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"| {name} | {cpu / total * 1e6:.1f} | {total / wall:,.0f} |",
        flush=True,
    )


async def main_async(runs: int, events: int, redis: bool) -> None:
    total = runs * events
    print(f"\n{runs} runs x {events} events, CPU per event (this process only):\n")
    print("| path | CPU µs / event | events/s (one core) |")
    print("|---|---|---|")
    await via_queue(runs, 50)  # warm up
    await measure("queue + frame", lambda: via_queue(runs, events), total)
    await measure(
        "MemoryEventLog.follow + frame",
        lambda: via_log(MemoryEventLog(), runs, events, False),
        total,
    )
    await measure(
        "MemoryEventLog + event_stream",
        lambda: via_log(MemoryEventLog(), runs, events, True),
        total,
    )
    if redis:
        from conduit.core.runs.eventlog.redis import RedisEventLog
        from conduit.infra.redis import build_async_redis

        client = build_async_redis(REDIS_URL, max_connections=20_000)
        await client.flushdb()
        try:
            log = RedisEventLog(client, retention=60)
            await measure(
                "RedisEventLog + event_stream (+ Redis itself, not counted)",
                lambda: via_log(log, runs, events, True),
                total,
            )
        finally:
            await client.flushdb()
            await client.aclose()


async def retained_bytes(events: int) -> None:
    """Memory a MemoryEventLog keeps per event (tracemalloc), next to the frame's own size."""
    import tracemalloc

    log = MemoryEventLog(max_events_per_run=events + 1)
    task_id = str(uuid.uuid4())
    await log.create(task_id)
    sample = payload(task_id, " word")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(events):
        await log.append(task_id, "message", dict(sample))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    size = len(frame(RunEvent.of(task_id, 1, "message", sample)))
    print(
        f"\nMemoryEventLog keeps {(after - before) / events:.0f} bytes per `message` event "
        f"(its SSE frame is {size} bytes, the token ' word' 5), until `retention` after close."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--redis", action="store_true")
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(main_async(args.runs, args.events, args.redis))
    asyncio.run(retained_bytes(10_000))


if __name__ == "__main__":
    main()
