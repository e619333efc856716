"""The task the Celery benchmarks send: it notes the moment it starts, and nothing else.

In-process scenarios read the start times from `STARTS`. A separate worker (distributed mode,
`conduit worker -I bench._tasks`) is given `BENCH_REDIS_URL` and pushes them onto a Redis list,
`RESULTS_KEY`, instead. Each entry is `(seq, perf_counter, time.time())` at the task's start.
"""

from __future__ import annotations

import json
import os
import queue
import time
from functools import cache
from typing import Any

from celery import shared_task

TASK_NAME = "bench.record"
RESULTS_KEY = "bench:celery:starts"
REDIS_ENV = "BENCH_REDIS_URL"

STARTS: queue.Queue[tuple[int, float, float]] = queue.Queue()


@cache
def _redis() -> Any:
    url = os.environ.get(REDIS_ENV)
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url)


@shared_task(name=TASK_NAME, ignore_result=True)  # type: ignore[untyped-decorator]
def record(seq: int, work: float = 0.0) -> None:
    """Record the start (sequence number, both clocks), then sleep `work` seconds."""
    started = (seq, time.perf_counter(), time.time())
    client = _redis()
    if client is None:
        STARTS.put(started)
    else:
        client.rpush(RESULTS_KEY, json.dumps(started))
    if work > 0:
        time.sleep(work)
